"""BMRS: Delta F closed forms against quadrature, the noise layer, the estimator and its named errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import xlogy
from scipy.stats import norm, truncnorm
from torch import nn

from optprune.bayes import (
    BMRS,
    LogNormalNoise,
    delta_f_normal,
    delta_f_uniform,
    expected_theta,
    kl_truncnorm_uniform,
    precision_bounds,
)
from optprune.data import load_dataset
from optprune.errors import InvalidParameterError, NotFittedError
from optprune.training import make_mlp

A, B = -20.0, 0.0
# posterior (mu, sigma) grid where quadrature is accurate: inside, below and above [a, b], narrow and wide
GRID = [(mu, s) for mu in (-22.0, -19.0, -12.0, -5.0, -1.0, 0.5) for s in (0.3, 1.0, 3.0, 10.0)]


def _q(mu: float, s: float):
    z = norm.cdf((B - mu) / s) - norm.cdf((A - mu) / s)
    return lambda x: norm.pdf(x, mu, s) / z


def _log_quad(f, lo: float, hi: float, points: list[float]) -> float:
    pts = [p for p in points if lo < p < hi]
    return math.log(quad(f, lo, hi, points=pts or None, limit=400, epsabs=0, epsrel=1e-11)[0])


def _quad_normal(mu, s, mr, sr) -> float:
    zr = norm.cdf((B - mr) / sr) - norm.cdf((A - mr) / sr)
    q = _q(mu, s)
    return _log_quad(lambda x: q(x) * (norm.pdf(x, mr, sr) / zr) * (B - A), A, B, [mu, mr])


@pytest.mark.parametrize("reduced", [(A, 0.5), (A, 2.0), (-15.0, 1.0)])
def test_delta_f_normal_matches_quadrature_and_needs_the_log_2pi_term(reduced):
    mr, sr = reduced
    checked = 0
    for mu, s in GRID:
        exact = _quad_normal(mu, s, mr, sr)
        if not (-40 < exact < 40):  # quadrature underflows far in the tails; tested where quadrature is exact
            continue
        closed = float(delta_f_normal(mu, s, A, B, mr, sr))
        assert closed == pytest.approx(exact, abs=1e-4, rel=1e-5)
        # the variant without -1/2 log 2 pi (suspected in the published code) is off by exactly 0.919 nats
        assert closed + 0.5 * math.log(2 * math.pi) - exact == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-4)
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("reduced", [precision_bounds(8), precision_bounds(4), (A, -8 * math.log(2)), (-15.0, -2.0)])
def test_delta_f_uniform_matches_quadrature(reduced):
    ar, br = reduced
    checked = 0
    for mu, s in GRID:
        q = _q(mu, s)
        exact = _log_quad(lambda x, q=q: q(x) * (B - A) / (br - ar), ar, br, [mu])
        if not (-40 < exact < 40):
            continue
        assert float(delta_f_uniform(mu, s, A, B, ar, br)) == pytest.approx(exact, abs=1e-4, rel=1e-5)
        checked += 1
    assert checked >= 15


def test_delta_f_normal_tends_to_savage_dickey_ratio():
    mu, s = -14.0, 4.0
    assert float(delta_f_normal(mu, s, A, B, A, 1e-6)) == pytest.approx(math.log((B - A) * _q(mu, s)(A)), abs=1e-4)


def test_kl_and_mean_match_quadrature():
    for mu, s in [(-5.0, 1.0), (-19.0, 3.0), (0.0, 0.2), (-10.0, 20.0)]:
        q = _q(mu, s)
        pts = [min(max(mu, A), B)]
        kl = quad(lambda x, q=q: xlogy(q(x), q(x) * (B - A)), A, B, points=pts, limit=400)[0]
        mean = quad(lambda x, q=q: q(x) * math.exp(x), A, B, points=pts, limit=400)[0]
        assert float(kl_truncnorm_uniform(mu, s, A, B)) == pytest.approx(kl, abs=1e-7)
        assert float(expected_theta(mu, s, A, B)) == pytest.approx(mean, rel=1e-7)


def test_noise_layer_kl_and_fold_match_the_closed_forms():
    torch.manual_seed(0)
    layer = LogNormalNoise(nn.Conv2d(2, 3, 3, padding=1), A, B).double()
    with torch.no_grad():
        layer.mu.copy_(torch.tensor([-1.0, -8.0, -19.0]))
        layer.log_sigma.copy_(torch.log(torch.tensor([0.5, 2.0, 4.0])))
    mu, s = layer.posterior()
    assert float(layer.kl().detach()) == pytest.approx(float(kl_truncnorm_uniform(mu, s, A, B).sum()), rel=1e-9)
    layer.eval()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    assert torch.allclose(layer(x), layer.fold()(x), atol=1e-12)
    samples = torch.stack([layer.sample_log_theta() for _ in range(200)])
    assert bool(((samples >= A) & (samples <= B)).all())


def _digits():
    X, y = load_dataset("digits", "train")
    return X[:400], y[:400]


def test_bmrs_prunes_and_the_smaller_model_computes_what_the_masked_one_does():
    torch.manual_seed(0)
    model = make_mlp([64, 24, 24, 10], (1, 8, 8))
    # posteriors started at log theta = -3 with a reduced range [a, -1]: units the data does not lift are pruned
    est = BMRS(prior="uniform", reduced=(A, -1.0), mu_init=-3.0, epochs=2, prune_every=1, batch_size=100)
    est.fit(model, _digits())
    small = est.transform()
    assert set(est.delta_f_) == set(est.kept_) == {"1", "3"}
    assert all(len(v) >= 1 for v in est.kept_.values())
    pruned = sum(24 - len(v) for v in est.kept_.values())
    assert pruned > 0
    assert est.n_params_after_ < est.n_params_before_
    assert sum(p.numel() for p in small.parameters()) == est.n_params_after_
    # the last pruning step removed every unit with Delta F >= 0 (min_keep = 1 keeps one only if all are >= 0);
    # earlier steps removed units for good, and the history adds up to what was removed
    for g, kept in est.kept_.items():
        assert np.all(est.delta_f_[g][list(kept)] < 0) or len(kept) == 1
    assert [h["epoch"] for h in est.history_] == [1, 2]
    assert sum(h["pruned"] for h in est.history_) == pruned
    assert est.history_[-1]["alive"] == sum(len(v) for v in est.kept_.values())
    X = torch.as_tensor(_digits()[0][:50])
    with torch.no_grad():
        assert torch.allclose(small(X), est.model_(X), atol=1e-5)
    assert est.history_[0]["epoch"] == 1


def _with_posteriors(monkeypatch, posteriors: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Make BMRS start the noise of module ``name`` at the given per-unit (mu, sigma) (epochs=0 keeps them)."""
    import optprune.bayes._bmrs as bmrs_module

    wrap = bmrs_module.wrap_modules

    def wrap_and_set(*args, **kwargs):
        wrappers = wrap(*args, **kwargs)
        for name, (mu, sigma) in posteriors.items():
            with torch.no_grad():
                wrappers[name].mu.copy_(torch.as_tensor(mu))
                wrappers[name].log_sigma.copy_(torch.log(torch.as_tensor(sigma)))
        return wrappers

    monkeypatch.setattr(bmrs_module, "wrap_modules", wrap_and_set)


def _delta_f_uniform_by_quadrature(mu: float, s: float, ar: float, br: float) -> float:
    q = _q(mu, s)
    return _log_quad(lambda x: q(x) * (B - A) / (br - ar), ar, br, [mu])


def test_bmrs_removes_exactly_the_units_whose_delta_f_is_non_negative(monkeypatch):
    # reduced prior log-uniform on [-20, -1]: Delta F >= 0 iff the posterior puts >= 19/20 of its mass below -1
    mu = np.array([-15.0, -0.5, -12.0, -0.3, -18.0, -0.2])
    sigma = np.array([0.5, 0.3, 1.0, 0.3, 2.0, 0.2])
    _with_posteriors(monkeypatch, {"1": (mu, sigma)})
    torch.manual_seed(0)
    model = make_mlp([64, 6, 5, 10], (1, 8, 8))
    est = BMRS(prior="uniform", reduced=(A, -1.0), epochs=0, mu_init=-0.1).fit(model, _digits())
    by_quad = np.array([_delta_f_uniform_by_quadrature(m, s, A, -1.0) for m, s in zip(mu, sigma)])
    # deep below -1: all the mass counts, log(20/19) = 0.0513; near 0: little of it does
    assert by_quad[[0, 2, 4]] == pytest.approx(math.log(20 / 19), abs=1e-6)
    assert np.all(by_quad[[1, 3, 5]] < -1.0)
    np.testing.assert_allclose(est.delta_f_["1"], by_quad, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(est.delta_f_["1"], delta_f_uniform(mu, sigma, A, B, A, -1.0), rtol=1e-6)  # float32
    assert est.kept_["1"] == (1, 3, 5)
    assert est.kept_["3"] == (0, 1, 2, 3, 4)  # mu_init -0.1: Delta F < 0 for every unit of group 3
    assert est.history_ == [{"epoch": 0, "pruned": 3, "alive": 8}]
    small = est.transform()
    assert small[1].out_features == 3 and small[3].in_features == 3
    X = torch.as_tensor(_digits()[0][:50])
    with torch.no_grad():
        assert torch.allclose(small(X), est.model_(X), atol=1e-5)
        # the masked model: the pruned units' rows zeroed, the others scaled by E[theta]
        theta = torch.as_tensor(expected_theta(mu, sigma, A, B), dtype=torch.float32)
        assert torch.allclose(est.model_[1].weight[[0, 2, 4]], torch.zeros(3, 64))
        assert torch.allclose(est.model_[1].weight[[1, 3, 5]], model[1].weight[[1, 3, 5]] * theta[[1, 3, 5], None])


def test_bmrs_keeps_min_keep_units_per_group(monkeypatch):
    # all 12 units have Delta F >= 0 (more than 19/20 of the mass below -1), larger the deeper mu is
    mu = np.random.default_rng(0).permutation(np.linspace(-2.5, -1.6, 12))
    sigma = np.full(12, 0.3)
    _with_posteriors(monkeypatch, {"1": (mu, sigma)})
    by_quad = np.array([_delta_f_uniform_by_quadrature(m, s, A, -1.0) for m, s in zip(mu, sigma)])
    assert np.all(by_quad > 0)
    least = np.argsort(by_quad)
    assert least[:3].tolist() == np.argsort(-mu)[:3].tolist()  # the three mu closest to -1
    for min_keep in (1, 3):
        torch.manual_seed(0)
        model = make_mlp([64, 12, 10], (1, 8, 8))
        est = BMRS(prior="uniform", reduced=(A, -1.0), epochs=0, min_keep=min_keep).fit(model, _digits())
        np.testing.assert_allclose(est.delta_f_["1"], by_quad, rtol=1e-6, atol=1e-8)
        # pruning every unit would leave none: the min_keep units of smallest Delta F stay
        assert est.kept_["1"] == tuple(sorted(least[:min_keep].tolist()))
        assert est.transform()[1].out_features == min_keep


def test_bmrs_named_errors():
    data = _digits()
    with pytest.raises(InvalidParameterError, match="a < b"):
        BMRS(a=0.0, b=-1.0).fit(make_mlp([64, 8, 10], (1, 8, 8)), data)
    with pytest.raises(InvalidParameterError, match="a <= a' < b' <= b"):
        BMRS(prior="uniform", reduced=(-25.0, -3.0)).fit(make_mlp([64, 8, 10], (1, 8, 8)), data)
    with pytest.raises(InvalidParameterError, match="a <= a' < b' <= b"):
        BMRS(prior="uniform", reduced=(-5.0, 1.0)).fit(make_mlp([64, 8, 10], (1, 8, 8)), data)
    with pytest.raises(InvalidParameterError, match="sigma_red > 0"):
        BMRS(prior="normal", reduced=(-20.0, 0.0)).fit(make_mlp([64, 8, 10], (1, 8, 8)), data)
    with pytest.raises(InvalidParameterError, match="no Linear or Conv2d layer"):
        BMRS(epochs=1).fit(make_mlp([64, 10], (1, 8, 8)), data)  # only the output layer: nothing to wrap
    with pytest.raises(InvalidParameterError, match="prior"):
        BMRS(prior="laplace").fit(make_mlp([64, 8, 10], (1, 8, 8)), data)
    with pytest.raises(NotFittedError):
        BMRS().transform()


def test_precision_bounds_are_the_authors_reduced_range():
    # BMRS_U-p compares posterior and prior mass on [log 2^-23, log 2^-p] (authors' LogUniformCDFBMRPruningLayer)
    assert precision_bounds(8) == pytest.approx((-23 * math.log(2), -8 * math.log(2)))
    assert precision_bounds(4) == pytest.approx((-15.9424, -2.7726), abs=1e-4)
    assert BMRS(prior="uniform")._reduced() == pytest.approx(precision_bounds(8))
    assert BMRS(prior="normal")._reduced() == (A, 1e-6)


def _savage_dickey(mu: np.ndarray, s: np.ndarray) -> np.ndarray:
    """log((b - a) q(a)): BMRS_N's Delta F in the limit of a spike at a, from scipy's truncated normal density."""
    return np.log((B - A) * truncnorm.pdf(A, (A - mu) / s, (B - mu) / s, loc=mu, scale=s))


def test_bmrs_n_with_the_default_spike_prunes_the_units_whose_delta_f_is_non_negative(monkeypatch):
    # BMRS_N's default reduced prior N(a, 1e-6^2): Delta F -> log((b-a) q(a)) (Savage-Dickey). Posteriors near a
    # (q(a) > 1/20) have Delta F > 0; near 0, or spread like the prior, Delta F < 0. The fit must prune exactly
    # the former: if it pruned nothing here, this test fails.
    mu = np.array([-19.5, -1.0, -18.0, -3.0, -20.0, -10.0, -14.0])
    sigma = np.array([0.5, 0.8, 2.0, 1.0, 4.0, 30.0, 8.0])
    sd = _savage_dickey(mu, sigma)
    assert np.all(sd[[0, 2, 4, 6]] > 0.02) and np.all(sd[[1, 3, 5]] < -0.01)  # (-10, 30): nearly flat, just below 0
    _with_posteriors(monkeypatch, {"1": (mu, sigma)})
    torch.manual_seed(0)
    est = BMRS(prior="normal", epochs=0).fit(make_mlp([64, 7, 5, 10], (1, 8, 8)), _digits())
    np.testing.assert_allclose(est.delta_f_["1"], sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(est.delta_f_["1"], delta_f_normal(mu, sigma, A, B, A, 1e-6), rtol=1e-6, atol=1e-6)
    assert est.kept_["1"] == (1, 3, 5)
    assert est.history_[-1]["pruned"] == 4
    assert est.transform()[1].out_features == 3


def _captured_loss_hook(monkeypatch, est: BMRS, model: nn.Module, posteriors) -> tuple:
    """Run ``est.fit`` with training replaced by a capture of its loss hook; returns (hook, wrappers' posteriors)."""
    import optprune.bayes._bmrs as bmrs_module

    seen: dict = {}

    def capture(model, Xt, yt, batch_loss, **kw):
        seen["hook"] = kw["loss_hook"]
        seen["post"] = [(m.posterior(), m.width) for m in model.modules() if isinstance(m, LogNormalNoise)]
        return model

    _with_posteriors(monkeypatch, posteriors)
    monkeypatch.setattr(bmrs_module, "fit_epochs", capture)
    est.fit(model, _digits())
    return seen["hook"], seen["post"]


@pytest.mark.parametrize("reduction", ["mean", "elbo", "sum"])
def test_kl_reduction_is_the_authors_mean_or_the_elbo(monkeypatch, reduction):
    rng = np.random.default_rng(1)
    post = {name: (rng.uniform(-15, 0, n), rng.uniform(0.1, 5, n)) for name, n in (("1", 6), ("3", 4))}
    est = BMRS(epochs=1, kl_reduction=reduction, kl_weight=0.5)
    hook, seen = _captured_loss_hook(monkeypatch, est, make_mlp([64, 6, 4, 10], (1, 8, 8)), post)
    kls = [kl_truncnorm_uniform(mu, s, A, B) for (mu, s), _ in seen]
    assert [w for _, w in seen] == [6, 4]
    expected = {"mean": (kls[0].mean() + kls[1].mean()) / 2, "elbo": (kls[0].sum() + kls[1].sum()) / 400,
                "sum": kls[0].sum() + kls[1].sum()}[reduction]
    assert float(hook(torch.tensor(1.0), 0).detach()) == pytest.approx(1.0 + 0.5 * expected, rel=1e-5)


def test_bmrs_defaults_are_the_authors_settings():
    est = BMRS()
    assert (est.a, est.b, est.mu_init, est.log_sigma_init, est.kl_reduction, est.noise_lr) == (
        -20.0, 0.0, 0.0, -5.0, "mean", None)
    with pytest.raises(InvalidParameterError, match="kl_reduction"):
        BMRS(kl_reduction="batch").fit(make_mlp([64, 8, 10], (1, 8, 8)), _digits())


def test_monitor_sees_the_plain_pruned_model_after_every_pruning_step():
    seen = []

    def monitor(model):
        assert not any(isinstance(m, LogNormalNoise) for m in model.modules()) and not model.training
        seen.append(int((model[1].weight.abs().sum(dim=1) == 0).sum()))
        return {"zero_rows": seen[-1]}

    torch.manual_seed(0)
    est = BMRS(prior="uniform", reduced=(A, -1.0), mu_init=-3.0, epochs=2, prune_every=1, monitor=monitor)
    est.fit(make_mlp([64, 12, 10], (1, 8, 8)), _digits())
    assert [h["epoch"] for h in est.history_] == [1, 2] and len(seen) == 2
    assert [h["zero_rows"] for h in est.history_] == seen
    assert seen[-1] == 12 - len(est.kept_["1"]) > 0  # pruned rows are zero in the monitored model


def test_published_delta_f_is_the_exact_one_plus_half_log_2pi_and_prunes_prior_like_units(monkeypatch):
    # a posterior spread like the prior (Delta F just below 0) stays under the exact rule and goes under the
    # authors' released formula, which lacks the -1/2 log 2pi normaliser; BMRS_U is the same in both forms
    mu, sigma = np.array([-10.0, -1.0]), np.array([30.0, 0.8])
    exact = delta_f_normal(mu, sigma, A, B, A, 1e-6)
    assert -0.1 < exact[0] < 0 and exact[1] < -100
    for form, kept in (("exact", (0, 1)), ("published", (1,))):
        _with_posteriors(monkeypatch, {"1": (mu, sigma)})
        est = BMRS(prior="normal", epochs=0, delta_f=form).fit(make_mlp([64, 2, 10], (1, 8, 8)), _digits())
        shift = 0.5 * math.log(2 * math.pi) if form == "published" else 0.0
        np.testing.assert_allclose(est.delta_f_["1"], exact + shift, rtol=1e-6)
        assert est.kept_["1"] == kept and est.decision_.metadata["delta_f"] == form
        est_u = BMRS(prior="uniform", epochs=0, delta_f=form).fit(make_mlp([64, 2, 10], (1, 8, 8)), _digits())
        np.testing.assert_allclose(est_u.delta_f_["1"], delta_f_uniform(mu, sigma, A, B, *precision_bounds(8)),
                                   rtol=1e-6)
