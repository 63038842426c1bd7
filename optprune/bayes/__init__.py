"""Bayesian structured pruning: multiplicative log-normal noise and Bayesian model reduction (BMRS).

:class:`BMRS` (Wright, Igel & Selvan 2024) trains a network with a truncated
log-normal noise per neuron/channel (:class:`LogNormalNoise`) and removes every
structure whose change in free energy under a reduced prior is non-negative:
BMRS_N (:func:`delta_f_normal`) or BMRS_U (:func:`delta_f_uniform`). The closed
forms and their derivation are in :mod:`optprune.bayes._deltaf`.
"""

from optprune.bayes._bmrs import BMRS, PRIORS, precision_bounds
from optprune.bayes._deltaf import (
    delta_f_normal,
    delta_f_uniform,
    expected_theta,
    kl_truncnorm_uniform,
    log_ndtr_diff,
    truncnorm_entropy,
    truncnorm_log_z,
)
from optprune.bayes._layers import LogNormalNoise, unwrap_model, wrap_modules

__all__ = [
    "BMRS",
    "PRIORS",
    "LogNormalNoise",
    "delta_f_normal",
    "delta_f_uniform",
    "expected_theta",
    "kl_truncnorm_uniform",
    "log_ndtr_diff",
    "precision_bounds",
    "truncnorm_entropy",
    "truncnorm_log_z",
    "unwrap_model",
    "wrap_modules",
]
