"""The half-sample correction: a closed-form critic's held-out bound extrapolated to unlimited training data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import minecli
from minecli.core.report import _bound_kind, _half_sample_lines
from minecli.core.half_sample import Columns, HalfSampleBound

FAST = dict(progress=False, null_permutations=0, bootstrap=50, validate_every=50, baseline=False, steps=100)
# the single-split machinery (cross-fitting averages several such splits: tests/core/test_crossfit.py)
ONE_SPLIT = {"reference_cross_fit": False}


def _mean_bound(tj: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
    return tj.mean()


def test_the_extrapolation_recovers_a_shortfall_that_falls_as_one_over_the_train_frames():
    # Bounds that follow I(m) = I - c/m exactly, with halves of unequal shares (odd unit counts,
    # utterances of different lengths): the extrapolation must give I itself, not I(n) + (I(n) - I(n/2)).
    truth, c, n, shares = 1.3, 40.0, 1000, [0.45, 0.55]
    cols = [truth - c / n] + [truth - c / (s * n) for s in shares]
    tj = Columns([torch.full((7,), v, dtype=torch.float64) for v in cols])
    tm = Columns([torch.zeros(7, 2, dtype=torch.float64) for _ in cols])
    corrected = HalfSampleBound(_mean_bound, shares)
    assert corrected.halves(tj, tm) == pytest.approx(cols[1:])
    assert corrected(tj, tm) == pytest.approx(truth, abs=1e-9)
    # resampled frames index every critic's scores alike
    picked = tj[torch.tensor([0, 0, 3])]
    assert [picked.column(i).shape for i in range(3)] == [(3,)] * 3
    assert picked[torch.tensor([1, 2])].column(0).shape == (2,)  # a resample of a resample composes the rows
    assert corrected(picked, tm[torch.tensor([0, 0, 3])]) == pytest.approx(truth, abs=1e-9)


def _dirichlet_table(seed: int, n: int, vx: int = 48, vy: int = 32, alpha: float = 0.5):
    """Pairs from a joint table with Dirichlet(alpha) rows over a Zipf x: the exact I and the samples."""
    rng = np.random.default_rng(seed)
    px = 1.0 / np.arange(1, vx + 1) ** 0.7
    px /= px.sum()
    joint = px[:, None] * rng.dirichlet(np.full(vy, alpha), size=vx)
    py = joint.sum(0)
    truth = float((joint * np.log(joint / (px[:, None] * py[None]))).sum())
    cells = rng.choice(vx * vy, size=n, p=joint.ravel())
    return cells // vy, cells % vy, truth


def test_the_correction_closes_most_of_a_large_tables_training_shortfall():
    # 48 x 32 cells from 4,200 train pairs: the smoothed table's held-out bound falls short of the truth
    # by ~0.1 nats (its cost of estimating ~1,500 free cells), far more than the ~0.03 nats of test noise on
    # 1,200 test pairs. The corrected number must sit closer to the truth on each of two draws, and the
    # shortfall of their mean must shrink by at least half.
    held, corrected, truths = [], [], []
    for seed in (0, 1):
        x, y, truth = _dirichlet_table(seed, 6000)
        r = minecli.estimate_mi(x, y, seed=seed, x_kind="index", y_kind="index", critic=ONE_SPLIT, **FAST)
        assert r.critic.startswith("table reference") and r.held_out_bound_nats is not None
        assert not r.lower_bound and r.half_sample["half_sample_bounds_nats"]
        assert abs(r.mi_nats - truth) < abs(r.held_out_bound_nats - truth), seed
        held.append(r.held_out_bound_nats)
        corrected.append(r.mi_nats)
        truths.append(truth)
    short_held = np.mean(truths) - np.mean(held)
    assert short_held > 0.05, "the setting must leave a shortfall to correct"
    assert abs(np.mean(truths) - np.mean(corrected)) < 0.5 * short_held


def test_switched_off_the_estimate_is_the_held_out_bound_and_a_lower_bound():
    x, y, _ = _dirichlet_table(2, 3000)
    on = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index", critic=ONE_SPLIT, **FAST)
    off = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index",
                              critic={"half_sample_correction": False, **ONE_SPLIT}, **FAST)
    assert off.held_out_bound_nats is None and off.half_sample is None and off.lower_bound
    # the same critic on the same test frames and negatives: the correction only adds to the bound
    assert on.held_out_bound_nats == pytest.approx(off.mi_nats, abs=1e-6)
    # the reported interval keeps the bound's own lower end, whatever the extrapolation adds
    assert on.ci95_nats[0] <= on.half_sample["ci95_held_out_nats"][0] + 1e-9
    assert on.ci95_nats[0] <= off.ci95_nats[0] + 1e-9


def test_too_few_train_utterances_to_halve_leave_the_bound_uncorrected():
    # 12 utterances split 6/3/3: fewer train utterances than HALF_SAMPLE_MIN_UNITS (a half would hold 3);
    # with 10 of them in train the same data are corrected.
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((300, 2)).astype(np.float32) for _ in range(16)]
    ys = [(x + rng.standard_normal(x.shape)).astype(np.float32) for x in xs]
    short = {**FAST, "steps": 10}  # the trained critic barely moves: the Gaussian reference gives the estimate
    few = minecli.estimate_mi(xs[:12], ys[:12], seed=0, split=(0.5, 0.25, 0.25), **short)
    assert few.critic.startswith("gaussian") and few.held_out_bound_nats is None and few.lower_bound
    enough = minecli.estimate_mi(xs, ys, seed=0, split=(0.625, 0.1875, 0.1875), **short)
    assert enough.critic.startswith("gaussian") and enough.held_out_bound_nats is not None


def test_the_summary_shows_the_held_out_bound_beside_the_corrected_number():
    doc = {"half_sample": {"held_out_bound_nats": 0.61234, "ci95_held_out_nats": [0.55, 0.67],
                           "half_sample_bounds_nats": [0.5321, 0.5456]}, "lower_bound": False}
    assert "extrapolated" in _bound_kind(doc)
    (line,) = _half_sample_lines(doc)
    assert "0.6123" in line and "[0.5500, 0.6700]" in line and "0.5321, 0.5456" in line
    assert _half_sample_lines({"half_sample": None, "lower_bound": True}) == []


@pytest.mark.usefixtures("installed_plugins")
def test_a_run_writes_the_held_out_bound_beside_the_corrected_number(npy_corpus, write_yaml, tmp_path):
    from minecli.core.pipeline import run_config

    def pair(rng, split, i):
        x = rng.integers(0, 8, 300)
        return x, np.where(rng.random(300) < 0.7, x, rng.integers(0, 8, 300))

    corpus = npy_corpus(pair, counts=(("train", 10), ("valid", 3), ("test", 3)))
    spec = {"kind": "index", "vocab_size": 8, "frame_rate": 100}
    cfg = write_yaml(tmp_path / "tokens.yaml", corpus["doc"](spec, spec, training={"steps": 20, "validate_every": 10}))
    run = run_config(cfg)
    doc = run.document
    assert doc["critic"].startswith("table reference"), doc["critic"]
    half = doc["half_sample"]
    assert doc["lower_bound"] is False and doc["held_out_bound_nats"] == half["held_out_bound_nats"]
    assert len(half["half_sample_bounds_nats"]) == 2 and sum(half["half_sample_shares"]) == pytest.approx(1.0)
    assert doc["ci95_nats"][0] <= half["ci95_held_out_nats"][0]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "extrapolated to unlimited training data" in summary
    assert f"held-out bound before the correction: {half['held_out_bound_nats']:.4f} nats" in summary
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["half_sample"]["half_sample_bounds_nats"] == pytest.approx(half["half_sample_bounds_nats"])


def test_a_half_that_cannot_be_refitted_costs_the_correction_not_the_run(monkeypatch):
    import minecli.core.selection as selection

    real, calls = selection.fit_references, []

    def fail_on_halves(*args, **kwargs):
        calls.append(args[1].n_frames)
        if len(calls) > 1:  # the full train split fits; its halves hit a singular covariance
            raise RuntimeError("linalg.eigh: the algorithm failed to converge")
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "fit_references", fail_on_halves)
    x, y, _ = _dirichlet_table(4, 3000)
    r = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index", critic=ONE_SPLIT, **FAST)
    assert len(calls) == 2 and calls[1] < calls[0]
    assert r.critic.startswith("table reference") and r.held_out_bound_nats is None and r.lower_bound
    assert any("could not be refitted on half of the train split (linalg.eigh" in w and "held-out bound" in w
               for w in r.warnings), r.warnings


def test_a_correction_that_is_not_finite_leaves_the_held_out_bound(monkeypatch):
    import minecli.core.trainer as trainer

    real = trainer.corrected_estimate

    def broken(*args, **kwargs):
        value, lo, hi, method, terms = real(*args, **kwargs)
        return float("nan"), lo, hi, method, terms

    monkeypatch.setattr(trainer, "corrected_estimate", broken)
    x, y, _ = _dirichlet_table(4, 3000)
    off = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index",
                              critic={"half_sample_correction": False}, **FAST)
    r = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index", **FAST)
    assert r.mi_nats == pytest.approx(off.mi_nats, abs=1e-9) and r.held_out_bound_nats is None and r.lower_bound
    assert any("half-sample correction was not finite" in w for w in r.warnings), r.warnings


def test_the_halves_refit_the_selected_recipe_not_the_best_of_each_half(monkeypatch):
    # Richardson's I - c/n holds for one fitting recipe; the best of several on each half is a flatter
    # curve (a recipe that wins on few frames), which shrank the correction. A half keeps the selected
    # recipe's candidate even where another validates higher, and falls back to the best only when that
    # recipe gives no finite bound or is not among the half's candidates.
    import minecli.core.selection as selection
    from minecli.core.reference import ReferenceCritic
    from minecli.core.spec import StreamSpec

    class Fixed(ReferenceCritic):
        def __init__(self, value: float, name: str) -> None:
            super().__init__()
            self.value, self.name = value, name

        def describe(self) -> str:
            return f"fixed {self.name} ({self.value})"

        def recipe(self) -> str:
            return self.name

    monkeypatch.setattr(selection, "fit_references",
                        lambda *a, **k: [Fixed(1.0, "a"), Fixed(2.0, "b"), Fixed(float("nan"), "c")])
    spec = StreamSpec(kind="index", frame_rate=50.0, vocab_size=4)
    sel = selection.ReferenceSelection(spec, spec, 1, 1, True, None, None,
                                       lambda c: (torch.full((4,), c.value), torch.zeros(4, 2)), _mean_bound,
                                       torch.device("cpu"), 0)
    assert sel._best_of("table", None).critic.name == "b"
    assert sel._best_of("table", None, "a").critic.name == "a"
    assert sel._best_of("table", None, "c").critic.name == "b"  # its bound is not finite
    assert sel._best_of("table", None, "zz").critic.name == "b"


def test_each_candidate_has_its_own_recipe_and_the_halves_refit_the_same_recipes():
    # the recipe names how a candidate was fitted, not what was fitted (a rank, a pseudo-count, a share):
    # two halves of one data set list the same recipes as the whole, one candidate each
    from minecli.core.copula import fit_copulas
    from minecli.core.reference import _fit_lda, _fit_table, fit_gaussian
    from minecli.core.student_classes import fit_student_classes

    rng = np.random.default_rng(0)
    n = 4000
    x = torch.as_tensor(rng.standard_normal((n, 4)), dtype=torch.float32)
    y = x[:, :3] + torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    k = torch.as_tensor(rng.integers(0, 16, n))
    f = torch.as_tensor(rng.standard_normal((n, 5)), dtype=torch.float32) + 0.5 * k[:, None].float()
    same = torch.where(torch.as_tensor(rng.random(n)) < 0.5, k, torch.as_tensor(rng.integers(0, 16, n)))
    fits = {"gaussian": lambda s: fit_gaussian(x[s], y[s]) + fit_copulas(x[s], y[s]),
            "lda": lambda s: _fit_lda("x", k[s], f[s], 16) + fit_student_classes("x", k[s], f[s], 16),
            "table": lambda s: _fit_table(k[s], same[s], 16, 16)}
    for kind, fit in fits.items():
        recipes = [[c.recipe() for c in fit(part)] for part in (slice(None), slice(0, n // 2), slice(n // 2, n))]
        assert len(set(recipes[0])) == len(recipes[0]), (kind, recipes[0])
        for half in recipes[1:]:
            assert len(set(half)) == len(half), (kind, half)
            # some candidates exist only where the data call for them (LDA directions between the noise floor
            # and the Marchenko-Pastur edge, t classes on t quantiles when some dimension is heavy-tailed)
            differ = set(half) ^ set(recipes[0])
            assert all(", edge" in r or "t quantiles" in r for r in differ), (kind, differ)
            assert len(differ) < len(recipes[0]) / 4, (kind, differ)
