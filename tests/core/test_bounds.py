"""The bounds as functions of scores: exact values, log-space stability, MINE's corrected gradient."""
from __future__ import annotations

import math

import pytest
import torch

from minecli.core import bounds
from minecli.core.registry import make_estimator


def test_dv_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    tj, tm = torch.randn(50, generator=g), torch.randn(50, 4, generator=g)
    direct = tj.mean() - torch.log(torch.exp(tm).mean())
    assert float(bounds.dv_bound(tj, tm).detach()) == pytest.approx(float(direct), abs=1e-6)


def test_bounds_are_finite_for_huge_scores():
    # exp(800) overflows float32 and float64; the log-space forms must not.
    tj = torch.full((8,), 800.0)
    tm = torch.full((8, 3), 799.0)
    assert float(bounds.dv_bound(tj, tm).detach()) == pytest.approx(1.0, abs=1e-4)
    assert math.isfinite(float(bounds.infonce_bound(tj, tm)))
    loss, value, log_ema = bounds.mine_loss(tj, tm, None, 0.99)
    assert math.isfinite(float(loss)) and math.isfinite(log_ema)


def test_optimal_critic_recovers_discrete_mi():
    # With T = log p(x,y)/(p(x)p(y)) the DV and NWJ(+1) bounds equal the MI exactly in expectation;
    # here we evaluate the expectations exactly by weighting every (x, y) cell.
    p = torch.tensor([[0.4, 0.1], [0.05, 0.45]])
    px, py = p.sum(1, keepdim=True), p.sum(0, keepdim=True)
    ratio = torch.log(p / (px * py))
    mi = float((p * ratio).sum())
    e_p = float((p * ratio).sum())
    e_q = float((px * py * torch.exp(ratio)).sum())
    assert e_p - math.log(e_q) == pytest.approx(mi, abs=1e-6)


def test_infonce_is_capped_by_log_k_plus_one():
    tj = torch.full((16,), 50.0)
    tm = torch.zeros(16, 7)
    assert float(bounds.infonce_bound(tj, tm)) == pytest.approx(math.log(8), abs=1e-6)
    assert make_estimator("infonce").ceiling_nats(7) == pytest.approx(math.log(8))


def test_mine_gradient_uses_moving_average_denominator():
    # MINE's surrogate must give d/dθ E_P[T] - d/dθ E_Q[e^T] / ema, with ema the moving average.
    w = torch.tensor(0.7, requires_grad=True)
    xj, xm = torch.linspace(-1, 1, 10), torch.linspace(-2, 2, 20)[:, None]
    log_ema_prev = math.log(3.0)
    loss, _, log_ema = bounds.mine_loss(w * xj, w * xm, log_ema_prev, 0.9)
    loss.backward()
    with torch.no_grad():
        mean_e = torch.exp(0.7 * xm).mean()
        ema = 0.9 * 3.0 + 0.1 * float(mean_e)
        expected = -(xj.mean() - (xm * torch.exp(0.7 * xm)).mean() / ema)
    assert math.exp(log_ema) == pytest.approx(ema, rel=1e-6)
    assert float(w.grad) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", ["mine", "dv", "nwj", "infonce", "smile", "js"])
def test_estimator_value_increases_with_separation(name):
    est = make_estimator(name)
    tm = torch.zeros(64, 4)
    low = float(est.bound(torch.full((64,), 0.1), tm))
    high = float(est.bound(torch.full((64,), 2.0), tm))
    assert high > low


def test_smile_clipping_bounds_the_partition_term():
    est = make_estimator("smile", {"tau": 1.0})
    tj = torch.zeros(10)
    tm = torch.full((10, 2), 30.0)
    # Clipped at tau=1: E_P[T] - log E_Q[e^clip(T)] = 0 - 1.
    assert float(est.bound(tj, tm)) == pytest.approx(-1.0, abs=1e-6)
    assert not est.lower_bound


def test_js_reports_the_dv_bound_but_trains_on_jensen_shannon():
    est = make_estimator("js")
    tj = torch.tensor([1.0, 2.0, 0.5], requires_grad=True)
    tm = torch.tensor([[0.0, -1.0], [0.3, 0.1], [-0.2, 0.4]], requires_grad=True)
    loss, value = est.loss(tj, tm)
    assert float(value) == pytest.approx(float(bounds.dv_bound(tj, tm).detach()), abs=1e-6)
    assert float(loss.detach()) == pytest.approx(-float(bounds.js_bound(tj, tm).detach()), abs=1e-6)
    assert est.lower_bound


@pytest.mark.parametrize("name", ["mine", "dv", "nwj", "js", "infonce", "smile"])
def test_an_estimator_that_reads_each_frames_log_mean_exp_gives_its_bound_on_a_resample_from_it(name):
    # The bootstrap, the half-sample correction and the permutation null pass each frame's log-mean-exp over
    # its K marginal scores for the bound's marginal scores where the estimator says it allows that: on any
    # resample of frames (repeats included) the bound must then read as on the K scores themselves.
    est = make_estimator(name)
    g = torch.Generator().manual_seed(1)
    tj, tm = 2 * torch.randn(300, generator=g), 3 * torch.randn(300, 16, generator=g)
    idx = torch.randint(0, 300, (300,), generator=g)
    full = float(est.bound(tj[idx], tm[idx]))
    reduced = float(est.bound(tj[idx], bounds.frame_log_mean_exp(tm)[idx]))
    if est.marginal_log_mean_exp:
        assert reduced == pytest.approx(full, rel=1e-5, abs=1e-5)  # float32 sums in another order
    else:  # InfoNCE's bound reads each frame's K scores against its own joint score (and K itself)
        assert reduced != pytest.approx(full, abs=1e-3)
    assert est.marginal_log_mean_exp == (name in ("mine", "dv", "nwj", "js"))
