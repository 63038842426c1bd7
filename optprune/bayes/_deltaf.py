r"""Closed forms for the truncated log-normal noise of BMRS: normaliser, entropy, KL, mean and Delta F.

Notation (Wright, Igel & Selvan 2024, "BMRS: Bayesian Model Reduction for
Structured Pruning", NeurIPS; noise model of Neklyudov et al. 2017,
"Structured Bayesian Pruning via Log-Normal Multiplicative Noise", NeurIPS).
Every structure (neuron, channel) carries a multiplicative noise
:math:`\theta > 0`; we work with :math:`\phi = \log\theta \in [a, b]`, in which

* the variational posterior is a normal truncated to :math:`[a, b]`:
  :math:`q(\phi) = \mathcal N(\phi; \mu, \sigma^2)\,/\,Z` on :math:`[a, b]`, with
  :math:`\alpha = (a-\mu)/\sigma`, :math:`\beta = (b-\mu)/\sigma`,
  :math:`Z = \Phi(\beta) - \Phi(\alpha)`;
* the prior is log-uniform on :math:`[e^a, e^b]`, i.e. uniform in :math:`\phi`:
  :math:`p(\phi) = 1/(b-a)`.

A change of variables multiplies every density by the same Jacobian, so KL
divergences and the density ratios below are the same in :math:`\theta` and
in :math:`\phi`.

KL term (what training adds to the loss, per structure)
-------------------------------------------------------
.. math::

   \mathrm{KL}(q\,\|\,p) = \log(b-a) - H(q), \qquad
   H(q) = \log\!\big(\sqrt{2\pi e}\,\sigma Z\big)
          + \frac{\alpha\,\varphi(\alpha) - \beta\,\varphi(\beta)}{2Z}

(:math:`\varphi` the standard normal density).

Bayesian model reduction
------------------------
Replacing the prior :math:`p` by a reduced prior :math:`\tilde p` (same
likelihood) changes the log evidence by (Friston et al. 2018, "Bayesian model
reduction", arXiv:1805.07092, eq. 6, with the posterior :math:`q` standing in
for the exact one)

.. math::

   \Delta F = \log \int q(\phi)\, \frac{\tilde p(\phi)}{p(\phi)}\, d\phi .

A structure is pruned when :math:`\Delta F \ge 0`: the reduced model (noise
shrunk towards 0) is at least as probable as the full one. No threshold.

**BMRS_U** (reduced prior: log-uniform on :math:`[a', b'] \subseteq [a, b]`):
:math:`\tilde p / p = (b-a)/(b'-a')` on :math:`[a', b']`, 0 elsewhere, so

.. math::

   \Delta F_U = \log\frac{b-a}{b'-a'}
              + \log\big(\Phi(\beta') - \Phi(\alpha')\big) - \log Z,
   \qquad \alpha' = \frac{a'-\mu}{\sigma},\ \beta' = \frac{b'-\mu}{\sigma}.

**BMRS_N** (reduced prior: normal :math:`\mathcal N(\tilde\mu, \tilde\sigma^2)`
truncated to :math:`[a, b]`, normaliser :math:`\tilde Z`; concentrated near
:math:`\theta = 0` with :math:`\tilde\mu = a` and small :math:`\tilde\sigma`).
The product of two normal densities is a normal density times a constant,

.. math::

   \mathcal N(\phi; \mu, \sigma^2)\,\mathcal N(\phi; \tilde\mu, \tilde\sigma^2)
   = \mathcal N(\mu; \tilde\mu, \sigma^2 + \tilde\sigma^2)\;\mathcal N(\phi; m, s^2),
   \quad s^2 = \Big(\frac1{\sigma^2} + \frac1{\tilde\sigma^2}\Big)^{-1},\
   m = s^2\Big(\frac{\mu}{\sigma^2} + \frac{\tilde\mu}{\tilde\sigma^2}\Big),

hence

.. math::

   \Delta F_N = \log(b-a) - \log Z - \log\tilde Z
     - \tfrac12 \log 2\pi - \tfrac12\log(\sigma^2 + \tilde\sigma^2)
     - \frac{(\mu - \tilde\mu)^2}{2(\sigma^2 + \tilde\sigma^2)}
     + \log\Big(\Phi\big(\tfrac{b-m}{s}\big) - \Phi\big(\tfrac{a-m}{s}\big)\Big).

The :math:`-\tfrac12\log 2\pi` term is the normaliser of
:math:`\mathcal N(\mu; \tilde\mu, \sigma^2 + \tilde\sigma^2)` and belongs in
:math:`\Delta F_N`: ``tests/test_bmrs.py`` checks both closed forms against
``scipy.integrate.quad`` of the defining integral on a grid of posterior
parameters and finds the formula without the term off by exactly
:math:`\tfrac12\log 2\pi \approx 0.919` nats everywhere (so dropping it makes
BMRS_N prune a structure only when the evidence gain exceeds 0.919 nats, a
hidden threshold). As :math:`\tilde\sigma \to 0` with :math:`\tilde\mu = a`,
:math:`\Delta F_N \to \log\big((b-a)\,q(a)\big)`, the Savage-Dickey ratio.

All logarithms of normal-CDF differences go through :func:`log_ndtr_diff`,
which stays finite far in the tails (posteriors pressed against :math:`a`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

__all__ = [
    "log_ndtr_diff",
    "truncnorm_log_z",
    "truncnorm_entropy",
    "kl_truncnorm_uniform",
    "expected_theta",
    "delta_f_normal",
    "delta_f_uniform",
]

_LOG_2PI = float(np.log(2.0 * np.pi))


def log_ndtr_diff(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    r""":math:`\log(\Phi(hi) - \Phi(lo))` for ``lo < hi``, stable in both tails.

    Where ``lo > 0`` both CDFs are near 1 and the difference is computed as
    :math:`\Phi(-lo) - \Phi(-hi)` instead; then
    :math:`\log(\Phi(h) - \Phi(l)) = \log\Phi(h) + \log(1 - e^{\log\Phi(l) - \log\Phi(h)})`.
    """
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
    flip = lo > 0
    l2 = np.where(flip, -hi, lo)
    h2 = np.where(flip, -lo, hi)
    lh, ll = log_ndtr(h2), log_ndtr(l2)
    with np.errstate(divide="ignore"):
        return lh + np.log(-np.expm1(np.minimum(ll - lh, 0.0)))


def truncnorm_log_z(mu: np.ndarray, sigma: np.ndarray, a: float, b: float) -> np.ndarray:
    r""":math:`\log Z = \log(\Phi(\beta) - \Phi(\alpha))` of :math:`\mathcal N(\mu, \sigma^2)` truncated to [a, b]."""
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    return log_ndtr_diff((a - mu) / sigma, (b - mu) / sigma)


def truncnorm_entropy(mu: np.ndarray, sigma: np.ndarray, a: float, b: float) -> np.ndarray:
    r"""Differential entropy :math:`H(q)` of the truncated normal (formula in the module docstring)."""
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    alpha, beta = (a - mu) / sigma, (b - mu) / sigma
    log_z = log_ndtr_diff(alpha, beta)
    pa = np.exp(-0.5 * alpha**2 - 0.5 * _LOG_2PI - log_z)  # phi(alpha) / Z
    pb = np.exp(-0.5 * beta**2 - 0.5 * _LOG_2PI - log_z)
    return 0.5 * (_LOG_2PI + 1.0) + np.log(sigma) + log_z + 0.5 * (alpha * pa - beta * pb)


def kl_truncnorm_uniform(mu: np.ndarray, sigma: np.ndarray, a: float, b: float) -> np.ndarray:
    r""":math:`\mathrm{KL}(q \| p) = \log(b-a) - H(q)` (truncated normal vs uniform on [a, b], in log space)."""
    return np.log(b - a) - truncnorm_entropy(mu, sigma, a, b)


def expected_theta(mu: np.ndarray, sigma: np.ndarray, a: float, b: float) -> np.ndarray:
    r""":math:`E[\theta] = e^{\mu + \sigma^2/2}\,(\Phi(\beta - \sigma) - \Phi(\alpha - \sigma)) / Z`."""
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    alpha, beta = (a - mu) / sigma, (b - mu) / sigma
    return np.exp(mu + 0.5 * sigma**2 + log_ndtr_diff(alpha - sigma, beta - sigma) - log_ndtr_diff(alpha, beta))


def delta_f_uniform(
    mu: np.ndarray, sigma: np.ndarray, a: float, b: float, a_red: float, b_red: float
) -> np.ndarray:
    r""":math:`\Delta F_U` for the reduced log-uniform prior on ``[a_red, b_red]`` (module docstring)."""
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    return (
        np.log(b - a) - np.log(b_red - a_red)
        + log_ndtr_diff((a_red - mu) / sigma, (b_red - mu) / sigma)
        - truncnorm_log_z(mu, sigma, a, b)
    )


def delta_f_normal(
    mu: np.ndarray, sigma: np.ndarray, a: float, b: float, mu_red: float, sigma_red: float
) -> np.ndarray:
    r""":math:`\Delta F_N` for the reduced prior :math:`\mathcal N(\tilde\mu, \tilde\sigma^2)` truncated to [a, b]."""
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    var = sigma**2 + sigma_red**2
    s2 = 1.0 / (1.0 / sigma**2 + 1.0 / sigma_red**2)
    m = s2 * (mu / sigma**2 + mu_red / sigma_red**2)
    s = np.sqrt(s2)
    return (
        np.log(b - a)
        - truncnorm_log_z(mu, sigma, a, b)
        - truncnorm_log_z(np.asarray(mu_red, dtype=float), np.asarray(sigma_red, dtype=float), a, b)
        - 0.5 * _LOG_2PI - 0.5 * np.log(var) - (mu - mu_red) ** 2 / (2.0 * var)
        + log_ndtr_diff((a - m) / s, (b - m) / s)
    )
