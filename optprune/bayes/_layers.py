r"""Variational multiplicative log-normal noise on the outputs of Linear and Conv2d layers.

:class:`LogNormalNoise` wraps one ``nn.Linear`` or ``nn.Conv2d`` and multiplies
each output unit (feature or channel) by its own noise
:math:`\theta_j = e^{\phi_j}`, :math:`\phi_j \sim \mathcal N(\mu_j, \sigma_j^2)`
truncated to :math:`[a, b]` (Neklyudov et al. 2017, "Structured Bayesian
Pruning via Log-Normal Multiplicative Noise", NeurIPS):

.. math::  y = \theta \odot (W x + b).

Training samples :math:`\phi` with the reparameterisation trick through the
inverse CDF, :math:`\phi = \mu + \sigma\,\Phi^{-1}(\Phi(\alpha) + u Z)`,
:math:`u \sim U(0, 1)`, so gradients reach :math:`\mu` and
:math:`\log\sigma`; evaluation uses :math:`E[\theta]`. :meth:`kl` is the KL
divergence to the log-uniform prior on :math:`[e^a, e^b]` in closed form (see
:mod:`optprune.bayes._deltaf`). :meth:`fold` returns a plain layer with
:math:`E[\theta_j]` (times the keep mask) folded into row ``j`` of the weight
and bias, which computes what the wrapper computes in eval mode.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from optprune.errors import UnsupportedLayerError

__all__ = ["LogNormalNoise", "torch_log_ndtr_diff", "wrap_modules", "unwrap_model"]

_LOG_2PI = math.log(2.0 * math.pi)
LOG_SIGMA_RANGE = (-10.0, 4.0)


def torch_log_ndtr_diff(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(\Phi(hi) - \Phi(lo))`, differentiable and stable in both tails (as in ``log_ndtr_diff``)."""
    flip = lo > 0
    l2 = torch.where(flip, -hi, lo)
    h2 = torch.where(flip, -lo, hi)
    lh, ll = torch.special.log_ndtr(h2), torch.special.log_ndtr(l2)
    return lh + torch.log(-torch.expm1(torch.clamp(ll - lh, max=-1e-12)))


class LogNormalNoise(nn.Module):
    """A Linear or Conv2d layer whose output units carry truncated log-normal multiplicative noise.

    ``a < b`` bound :math:`\\log\\theta`; ``mu_init`` and ``log_sigma_init`` start the
    posterior. ``mask`` (a buffer of 0/1 per unit) switches units off once pruned.
    """

    mask: torch.Tensor

    def __init__(self, layer: nn.Module, a: float, b: float, mu_init: float = 0.0, log_sigma_init: float = -5.0):
        super().__init__()
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            raise UnsupportedLayerError("layer", type(layer).__name__, ["Linear", "Conv2d"])
        self.layer = layer
        self.a, self.b = float(a), float(b)
        width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        dev = layer.weight.device
        self.mu = nn.Parameter(torch.full((width,), float(mu_init), device=dev))
        self.log_sigma = nn.Parameter(torch.full((width,), float(log_sigma_init), device=dev))
        self.register_buffer("mask", torch.ones(width, device=dev))

    @property
    def width(self) -> int:
        return int(self.mu.numel())

    def _params(self) -> tuple[torch.Tensor, torch.Tensor]:
        mu = torch.clamp(self.mu, self.a, self.b)
        sigma = torch.exp(torch.clamp(self.log_sigma, *LOG_SIGMA_RANGE))
        return mu, sigma

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of every unit's posterior over :math:`\\log\\theta` (clamped as in training)."""
        with torch.no_grad():
            mu, sigma = self._params()
        return mu.double().cpu().numpy(), sigma.double().cpu().numpy()

    def sample_log_theta(self) -> torch.Tensor:
        mu, sigma = self._params()
        alpha, beta = (self.a - mu) / sigma, (self.b - mu) / sigma
        ca, cb = torch.special.ndtr(alpha), torch.special.ndtr(beta)
        u = torch.rand_like(mu)
        p = torch.clamp(ca + u * (cb - ca), 1e-6, 1.0 - 1e-6)
        return torch.clamp(mu + sigma * torch.special.ndtri(p), self.a, self.b)

    def expected_theta(self) -> torch.Tensor:
        mu, sigma = self._params()
        alpha, beta = (self.a - mu) / sigma, (self.b - mu) / sigma
        return torch.exp(mu + 0.5 * sigma**2 + torch_log_ndtr_diff(alpha - sigma, beta - sigma)
                         - torch_log_ndtr_diff(alpha, beta))

    def kl(self) -> torch.Tensor:
        """Sum over unmasked units of KL(q || log-uniform prior on [a, b])."""
        mu, sigma = self._params()
        alpha, beta = (self.a - mu) / sigma, (self.b - mu) / sigma
        log_z = torch_log_ndtr_diff(alpha, beta)
        pa = torch.exp(-0.5 * alpha**2 - 0.5 * _LOG_2PI - log_z)
        pb = torch.exp(-0.5 * beta**2 - 0.5 * _LOG_2PI - log_z)
        entropy = 0.5 * (_LOG_2PI + 1.0) + torch.log(sigma) + log_z + 0.5 * (alpha * pa - beta * pb)
        return ((math.log(self.b - self.a) - entropy) * self.mask).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        theta = torch.exp(self.sample_log_theta()) if self.training else self.expected_theta()
        theta = theta * self.mask
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return out * theta.reshape(shape)

    def fold(self) -> nn.Module:
        """A plain copy of the layer with ``E[theta] * mask`` folded into its weight rows and bias."""
        layer = copy.deepcopy(self.layer)
        with torch.no_grad():
            scale = (self.expected_theta() * self.mask).to(layer.weight.dtype)
            layer.weight.mul_(scale.reshape((-1,) + (1,) * (layer.weight.dim() - 1)))
            if layer.bias is not None:
                layer.bias.mul_(scale)
        return layer


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def wrap_modules(model: nn.Module, names: list[str], a: float, b: float, mu_init: float = 0.0,
                 log_sigma_init: float = -5.0) -> dict[str, LogNormalNoise]:
    """Replace the named Linear/Conv2d submodules of ``model`` (in place) by :class:`LogNormalNoise` wrappers."""
    wrappers = {}
    for name in names:
        wrapper = LogNormalNoise(model.get_submodule(name), a, b, mu_init, log_sigma_init)
        _set_submodule(model, name, wrapper)
        wrappers[name] = wrapper
    return wrappers


def unwrap_model(model: nn.Module, wrappers: dict[str, LogNormalNoise]) -> nn.Module:
    """A copy of ``model`` with every wrapper replaced by its folded plain layer (original module names)."""
    new = copy.deepcopy(model)
    for name in wrappers:
        wrapper = new.get_submodule(name)
        assert isinstance(wrapper, LogNormalNoise)
        _set_submodule(new, name, wrapper.fold())
    return new
