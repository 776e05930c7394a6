"""The reported interval spans the estimator's bias, not only test noise; the cheap interval stays available."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minecli
from minecli.core.interval import honest_interval, include_estimate


def test_the_interval_is_the_hull_of_test_noise_in_sample_bound_and_other_estimates():
    (lo, hi), terms = honest_interval(1.0, (0.9, 1.1), in_sample=1.3, others=[0.8], n_in_sample=8000)
    # in-sample 1.3 with the test noise 0.1 above it; another critic's lower bound 0.8 says nothing
    # below (it missed more), so the lower end stays the test noise's.
    assert hi == pytest.approx(1.4) and lo == pytest.approx(0.9)
    assert terms["test_noise"] == [0.9, 1.1] and terms["other_estimates_nats"] == [0.8]
    (lo, hi), _ = honest_interval(1.0, (0.9, 1.1), in_sample=None, others=[1.2], n_in_sample=0)
    assert (lo, hi) == pytest.approx((0.9, 1.3))
    # The in-sample bound only ever raises the upper end: a critic that underfits adds nothing.
    (lo, hi), _ = honest_interval(1.0, (0.9, 1.1), in_sample=0.5, others=[], n_in_sample=8000)
    assert (lo, hi) == (0.9, 1.1)
    final = {"mi_nats": 1.0, "ci95_nats": (0.9, 1.1), "ci95_test_noise_nats": (0.95, 1.05)}
    include_estimate(final, 1.2, "baseline_nats")
    assert final["ci95_nats"] == pytest.approx((0.9, 1.25)) and final["ci_terms"] == {"baseline_nats": 1.2}


def _table_pairs(vx: int, vy: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(vx * vy, 0.5)).reshape(vx, vy)
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    truth = float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())
    cells = rng.choice(vx * vy, size=n, p=p.ravel())
    return cells // vy, cells % vy, truth


def test_a_data_limited_critic_gets_an_interval_that_reaches_the_truth():
    # 64 x 32 tokens from 4,000 pairs: about 2 pairs per cell, so every critic fitted on 2,800 of them
    # misses much of the table and the held-out bound sits ~20% low, several test-noise widths below
    # the truth. The in-sample bound of the same critic (overfit, above the truth) and the
    # bias-corrected plug-in on the test frames bring the upper end up to it. (The half-sample correction,
    # off here, moves the estimate itself towards the truth: checked at the end.)
    x, y, truth = _table_pairs(64, 32, 4000, seed=0)
    opts = dict(steps=300, validate_every=50, progress=False, null_permutations=0, bootstrap=100, hidden_dims=[32],
                seed=0)
    # one split: the interval's terms of a single test split are checked (cross-fitting averages them)
    r = minecli.estimate_mi(x, y, critic={"half_sample_correction": False, "reference_cross_fit": False}, **opts)
    nlo, nhi = r.ci95_test_noise_nats
    lo, hi = r.ci95_nats
    assert nhi < truth, (r.ci95_test_noise_nats, truth)  # test noise alone misses it
    assert lo <= truth <= hi, (r.ci95_nats, truth)
    assert lo <= nlo and hi >= nhi
    # ... without becoming useless: the upper end stays within 60% of the truth above it.
    assert hi < 1.6 * truth, (r.ci95_nats, truth)
    assert "in_sample_nats" in r.ci_terms and math.isfinite(r.ci_terms["in_sample_nats"])
    assert r.to_dict()["ci95_test_noise_nats"] == [nlo, nhi]
    corrected = minecli.estimate_mi(x, y, critic={"reference_cross_fit": False}, **opts)
    assert corrected.held_out_bound_nats == pytest.approx(r.mi_nats, abs=1e-6)
    assert abs(corrected.mi_nats - truth) < 0.5 * abs(r.mi_nats - truth)
    assert corrected.ci95_nats[0] <= truth <= corrected.ci95_nats[1]
    # the defaults (corrected and cross-fitted over every sample) keep the truth inside too
    crossed = minecli.estimate_mi(x, y, **opts)
    assert len(crossed.folds) == 5 and crossed.ci95_nats[0] <= truth <= crossed.ci95_nats[1]
    assert abs(crossed.mi_nats - truth) < 0.5 * abs(r.mi_nats - truth)
