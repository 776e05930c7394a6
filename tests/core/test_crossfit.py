"""Cross-fitting a selected closed-form critic: the parts, the combined estimate, and the fallbacks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import minecli
from minecli.core.api import split_plan
from minecli.core.crossfit import other_parts
from minecli.core.selection import ReferenceSelection


def test_the_parts_cover_the_data_once_beside_the_main_test_split():
    plan = split_plan(1000, (0.7, 0.1, 0.2), 1, seed=4)[0]
    parts = other_parts(plan, (0.7, 0.1, 0.2), seed=4)
    assert len(parts) == 4  # the train and valid units, 80%, in parts the size of the 20% test split
    tests = [plan[2], *(p[2] for p in parts)]
    assert torch.equal(torch.sort(torch.cat(tests)).values, torch.arange(1000))  # every unit tested once
    for train, valid, test in parts:
        assert len(test) == 200
        # each part's critic is fitted and validated on everything else, in the split's 7:1 ratio
        assert torch.equal(torch.sort(torch.cat([train, valid, test])).values, torch.arange(1000))
        assert len(valid) == 100 and len(train) == 700
    # a test split of a tenth: the other 90% in nine parts
    assert len(other_parts(split_plan(1000, (0.8, 0.1, 0.1), 1, 0)[0], (0.8, 0.1, 0.1), 0)) == 9


def test_too_few_units_for_a_part_leave_the_main_split_alone():
    plan = split_plan(6, (0.7, 0.1, 0.2), 1, seed=0)[0]  # 6 utterances: one in test, parts of one
    assert other_parts(plan, (0.7, 0.1, 0.2), seed=0) == []


def _gaussian(n: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = (rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, 2))).astype(np.float32)
    return x, y, -math.log(1 - rho**2)


FAST = dict(steps=200, validate_every=50, progress=False, null_permutations=19, bootstrap=100, baseline=False)


def test_a_selected_reference_scores_every_sample_and_the_test_noise_shrinks():
    x, y, truth = _gaussian(5000, 0.6, 1)  # 0.446 nats
    r = minecli.estimate_mi(x, y, seed=0, **FAST)
    one = minecli.estimate_mi(x, y, seed=0, critic={"reference_cross_fit": False}, **FAST)
    assert r.critic.startswith("gaussian") and "cross-fitted" in r.critic
    assert len(r.folds) == 5 and r.n_test_frames == 5000 and one.n_test_frames == 1000
    # the main split's estimate is the first part, unchanged
    assert r.folds[0]["mi_nats"] == pytest.approx(one.mi_nats)
    assert r.mi_nats == pytest.approx(sum(f["mi_nats"] * f["n_test_frames"] for f in r.folds) / 5000)
    # five times the test frames: the test-noise interval narrows by about sqrt(5) (0.45); 0.65 leaves
    # room for the bootstrap's own noise at 100 resamples
    width = r.ci95_test_noise_nats[1] - r.ci95_test_noise_nats[0]
    assert width < 0.65 * (one.ci95_test_noise_nats[1] - one.ci95_test_noise_nats[0])
    # 5,000 test scores: SE ~0.02 nats; 0.06 is 3 SE
    assert abs(r.mi_nats - truth) < 0.06, r
    assert r.ci95_nats[0] <= truth <= r.ci95_nats[1]
    assert r.p_value is not None and r.p_value < 1e-3


def test_a_trained_critic_that_wins_is_not_cross_fitted():
    x, y, _ = _gaussian(3000, 0.6, 2)
    r = minecli.estimate_mi(x, y, seed=0, critic={"reference": False}, **FAST)
    assert r.folds == [] and r.n_test_frames == 600


def test_a_part_without_a_reference_leaves_the_main_estimate(monkeypatch):
    x, y, _ = _gaussian(3000, 0.6, 3)
    want = minecli.estimate_mi(x, y, seed=0, critic={"reference_cross_fit": False}, **FAST)
    calls = []

    def no_fit(self: ReferenceSelection) -> bool:
        calls.append(1)
        return len(calls) < 3  # the third part's reference does not validate to a finite bound

    monkeypatch.setattr(ReferenceSelection, "adopt", no_fit)
    r = minecli.estimate_mi(x, y, seed=0, **FAST)
    assert len(calls) == 3 and r.folds == [] and r.n_test_frames == 600
    assert r.mi_nats == pytest.approx(want.mi_nats) and "cross-fitted" not in r.critic
    assert any(w.startswith("no reference refitted for part 4 of the cross-fit") and "main split's alone" in w
               for w in r.warnings), r.warnings


def test_a_part_whose_reference_cannot_be_fitted_costs_the_cross_fit_not_the_run(monkeypatch):
    import minecli.core.selection as selection

    real, sizes = selection.fit_references, []

    def fail_after_the_main_split(*args, **kwargs):
        sizes.append(args[1].n_frames)
        if len(sizes) > 3:  # the main split and its two halves fit; the next part's covariance is singular
            raise RuntimeError("linalg.eigh: the algorithm failed to converge")
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "fit_references", fail_after_the_main_split)
    x, y, _ = _gaussian(3000, 0.6, 4)
    r = minecli.estimate_mi(x, y, seed=0, **FAST)
    assert len(sizes) == 4 and r.folds == [] and r.critic.startswith("gaussian") and math.isfinite(r.mi_nats)
    assert r.held_out_bound_nats is not None  # the main split's correction stands
    assert any("could not be refitted for part 2 of the cross-fit (linalg.eigh" in w for w in r.warnings), r.warnings


def test_wide_float_frames_are_not_cross_fitted():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 300)).astype(np.float32)  # wider than CROSS_FIT_MAX_WIDTH
    y = (0.6 * x[:, :2] + 0.8 * rng.standard_normal((3000, 2))).astype(np.float32)
    r = minecli.estimate_mi(x, y, seed=0, **FAST)
    assert r.critic.startswith("gaussian") and r.folds == [] and r.n_test_frames == 600


def test_a_serially_correlated_series_is_cross_fitted_by_blocks(monkeypatch):
    from minecli.testing import ar1_frames

    # the subject is the cross-fit, not the selection: the trained MLP validates within a standard error of
    # the Gaussian reference here, so the reference is made to win whatever the trained critic's lead
    monkeypatch.setattr("minecli.core.selection.LEAD_SE", 1e6)
    rng = np.random.default_rng(6)
    g = ar1_frames(6000, 8.0, rng, 2).astype(np.float64)
    y = (0.6 * g + 0.8 * ar1_frames(6000, 8.0, rng, 2)).astype(np.float32)
    with pytest.warns(UserWarning, match="serially correlated"):
        r = minecli.estimate_mi(g.astype(np.float32), y, seed=0, **FAST)
    blocks = r.warnings[0]  # "... split as B contiguous blocks of L frames with G frames dropped ..."
    n_blocks, length = (int(v) for v in (blocks.split("split as ")[1].split()[0], blocks.split("blocks of ")[1].split()[0]))
    assert len(r.folds) == 5 and r.n_test_frames == n_blocks * length  # every block scored once
    # each block is a unit (as an utterance) in every part: resampled and re-paired whole
    assert r.ci_method.startswith("utterances") and r.ci_method.endswith("in each of 5 folds")
    assert r.permutation_unit == "utterances"
    assert all(f["n_test_frames"] % length == 0 for f in r.folds)
    # 2 x I(rho = 0.6) = 0.446 nats per frame; the series has ~6000 / (2 x 8) effective samples: 0.15 is ~3 SE
    assert abs(r.mi_nats - (-math.log(1 - 0.36))) < 0.15, r
