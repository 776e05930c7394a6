"""The half-sample correction: a closed-form critic's held-out bound extrapolated to unlimited training data."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import minecli
from minecli.core.report import _bound_kind, _half_sample_lines
from minecli.core.half_sample import Columns, HalfSampleBound, posterior_corrected
from minecli.core.reference import TableReference, TupleTableReference, _expected_kl, _fit_table, _fit_tuple_table, _sums

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


def _dirichlet_table(seed: int, n: int, vx: int = 48, vy: int = 32, alpha: float = 0.5, with_joint: bool = False):
    """Pairs from a joint table with Dirichlet(alpha) rows over a Zipf x: the samples and the exact I (and the
    table)."""
    rng = np.random.default_rng(seed)
    px = 1.0 / np.arange(1, vx + 1) ** 0.7
    px /= px.sum()
    joint = px[:, None] * rng.dirichlet(np.full(vy, alpha), size=vx)
    py = joint.sum(0)
    truth = float((joint * np.log(joint / (px[:, None] * py[None]))).sum())
    cells = rng.choice(vx * vy, size=n, p=joint.ravel())
    return (cells // vy, cells % vy, truth, joint) if with_joint else (cells // vy, cells % vy, truth)


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
        # the halves' 1/n law understates a table this sparse: the posterior's shortfall gives the estimate
        assert r.half_sample["correction"] == "posterior"
        assert r.mi_nats == pytest.approx(r.held_out_bound_nats + r.half_sample["posterior_shortfall_nats"], abs=1e-9)
        assert f"(held-out bound {r.held_out_bound_nats:.4f}, before the correction for the train split's size)" in str(r)
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
    assert "posterior" not in line
    doc["half_sample"].update(posterior_shortfall_nats=0.0871, correction="posterior")
    (line,) = _half_sample_lines(doc)
    assert "+0.0871 nats (the estimate)" in line
    # cross-fitted: how each part was corrected (a part whose trained critic gave its estimate has none)
    parts = [{"held_out_bound_nats": 0.5, "correction": "posterior"}, None,
             {"held_out_bound_nats": 0.5, "half_sample_bounds_nats": [0.4, 0.41]},
             {"held_out_bound_nats": 0.5, "correction": "posterior"}]
    (line,) = _half_sample_lines({"half_sample": {"held_out_bound_nats": 0.5, "folds": parts}, "lower_bound": False})
    assert line.endswith("folds 2 by the posterior shortfall, 1 by the halves, 1 uncorrected "
                         "(critic.half_sample_correction: false reports the bound)"), line
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
    # a table's posterior shortfall corrects it without halves: the halves' correction alone is off here
    with monkeypatch.context() as m:
        m.setattr(TableReference, "posterior_shortfall", lambda self: None)
        r = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index", critic=ONE_SPLIT, **FAST)
    assert len(calls) == 2 and calls[1] < calls[0]
    assert r.critic.startswith("table reference") and r.held_out_bound_nats is None and r.lower_bound
    assert any("could not be refitted on half of the train split (linalg.eigh" in w and "held-out bound" in w
               for w in r.warnings), r.warnings
    # with it, the same run is corrected by the posterior alone, and says nothing of an uncorrected bound
    calls.clear()
    r = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index", critic=ONE_SPLIT, **FAST)
    assert r.half_sample["correction"] == "posterior" and "half_sample_bounds_nats" not in r.half_sample
    assert r.mi_nats == pytest.approx(r.held_out_bound_nats + r.half_sample["posterior_shortfall_nats"], abs=1e-9)
    assert not any("held-out bound" in w for w in r.warnings), r.warnings


def test_a_correction_that_is_not_finite_leaves_the_held_out_bound(monkeypatch):
    import minecli.core.trainer as trainer

    real = trainer.corrected_estimate

    def broken(*args, **kwargs):
        value, lo, hi, method, terms = real(*args, **kwargs)
        return float("nan"), lo, hi, method, terms

    monkeypatch.setattr(trainer, "corrected_estimate", broken)
    monkeypatch.setattr(TableReference, "posterior_shortfall", lambda self: None)  # the halves' correction alone
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


def test_a_recipe_refits_only_its_own_family_and_the_same_candidate(monkeypatch):
    # the halves refit one recipe: the t EMs (seconds per fit on 50 float dims) run only for a t recipe, and
    # each recipe's candidate is the one the unrestricted fit gives, to the bit
    import minecli.core.copula as copula
    import minecli.core.student_classes as student_classes
    from minecli.core.data import FrameBank
    from minecli.core.reference import fit_references
    from minecli.core.spec import StreamSpec

    rng = np.random.default_rng(1)
    n = 3000
    x = rng.standard_t(3, (n, 3)).astype(np.float32)
    y = (x[:, :2] + rng.standard_t(3, (n, 2))).astype(np.float32)
    k = rng.integers(0, 12, n)
    f = (rng.standard_t(3, (n, 4)) + 0.6 * k[:, None]).astype(np.float32)
    cases = [("gaussian", FrameBank.from_arrays(x, y), StreamSpec(kind="float", frame_rate=50.0, dim=3),
              StreamSpec(kind="float", frame_rate=50.0, dim=2)),
             ("lda", FrameBank.from_arrays(k, f), StreamSpec(kind="index", frame_rate=50.0, vocab_size=12),
              StreamSpec(kind="float", frame_rate=50.0, dim=4))]
    probe = torch.as_tensor(x[:50]), torch.as_tensor(y[:50]), torch.as_tensor(k[:50]), torch.as_tensor(f[:50])
    real_t, real_tc = copula.fit_student, student_classes._fit
    for kind, bank, sx, sy in cases:
        def fit(recipe=None):
            return fit_references(kind, bank, 1, 1, sx, sy, torch.Generator().manual_seed(3), recipe=recipe)

        def encode(c):
            a, b = (probe[0], probe[1]) if kind == "gaussian" else (probe[2], probe[3])
            with torch.no_grad():
                return torch.cat([c.encode_x(a).flatten(), c.encode_y(b).flatten()])

        full = fit()
        assert any("t quantiles" in c.recipe() or "t classes" in c.recipe() for c in full), kind
        for cand in full:
            t_recipe = cand.recipe().startswith(("copula t quantiles", "t classes"))
            with monkeypatch.context() as m:
                if not t_recipe:
                    m.setattr(copula, "fit_student", lambda *a: pytest.fail("a t EM for " + cand.recipe()))
                    m.setattr(student_classes, "_fit", lambda *a: pytest.fail("a t EM for " + cand.recipe()))
                same = [c for c in fit(cand.recipe()) if c.recipe() == cand.recipe()]
            assert len(same) == 1 and torch.equal(encode(same[0]), encode(cand)), cand.recipe()
    assert (copula.fit_student, student_classes._fit) == (real_t, real_tc)


def test_a_dirichlet_posteriors_expected_kl_matches_monte_carlo():
    # E KL(theta || E theta) for Dirichlet rows of mixed sizes (counts plus small pseudo-counts, as a sparse
    # table's rows are) against 40,000 draws of theta per row: within 4 Monte Carlo standard errors.
    rng = np.random.default_rng(0)
    alpha = np.stack([np.r_[rng.integers(0, 4, 20), np.zeros(10)] + 0.05,
                      np.r_[rng.integers(0, 40, 20), np.zeros(10)] + 0.5, np.full(30, 0.3)])
    closed = _expected_kl(_sums(torch.tensor(alpha))).numpy()
    for row, value in zip(alpha, closed):
        theta = np.clip(rng.dirichlet(row, size=40_000), 1e-300, None)
        mean = row / row.sum()
        kl = (theta * np.log(theta / mean)).sum(1)
        assert abs(kl.mean() - value) < 4 * kl.std() / np.sqrt(kl.size), (kl.mean(), value)


def test_the_posterior_shortfall_predicts_a_sparse_tables_population_deficit():
    # 64 x 32 Dirichlet(0.5) rows from 4,000 pairs (~2 per cell): each fitted table's bound on the true
    # distribution (no test noise) falls short of the truth by 0.15-0.17 nats, and its posterior must say
    # so within 20%: the deficit of one draw scatters around the expectation given its counts by ~10%.
    for seed in range(3):
        x, y, truth, joint = _dirichlet_table(seed, 4000, vx=64, vy=32, alpha=0.5, with_joint=True)
        px, py = joint.sum(1), joint.sum(0)
        fitted = [c for c in _fit_table(torch.tensor(x), torch.tensor(y), 64, 32) if c.posterior_shortfall() is not None]
        assert {c.rows for c in fitted} == {"joint", "x", "y"}
        for c in fitted:
            t = c._t(torch.arange(64)[:, None], torch.arange(32)[None, :]).double().numpy()
            population = (joint * t).sum() - np.log((px[:, None] * py[None] * np.exp(t)).sum())
            deficit = truth - population
            assert deficit > 0.1, "the setting must leave a shortfall to predict"
            assert c.posterior_shortfall() == pytest.approx(deficit, rel=0.2), (seed, c.rows)


def test_priors_centred_on_fitted_structure_and_tuple_rows_have_no_posterior_shortfall():
    # A noisy identity channel over 40 tokens: the "own token" tables centre their prior on a fitted keep
    # share (and the channel has no counts), which the posterior would take as known; a tuple table's unseen
    # tuples share a row that no posterior of the seen ones describes.
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.integers(0, 40, 3000))
    y = torch.where(torch.tensor(rng.random(3000) < 0.7), x, torch.tensor(rng.integers(0, 40, 3000)))
    fits = _fit_table(x, y, 40, 40)
    own = [c for c in fits if "own token" in c.towards]
    assert own and all(c.posterior_shortfall() is None for c in own)
    assert all(c.posterior_shortfall() > 0 for c in fits if c.towards in ("uniform", "x", "y"))
    tuples = _fit_tuple_table(torch.stack([x, x // 2], 1), y.reshape(-1, 1), 40, 40)
    assert tuples and all(isinstance(c, TupleTableReference) and c.posterior_shortfall() is None for c in tuples)


def test_the_larger_correction_gives_the_estimate():
    halves = {"held_out_bound_nats": 0.50, "ci95_held_out_nats": (0.45, 0.55), "half_sample_bounds_nats": [0.46, 0.47]}
    # the posterior's shortfall above the halves' extrapolation: the held-out bound and its test noise move by it
    value, lo, hi, terms = posterior_corrected(0.10, (0.535, 0.47, 0.60), halves)
    assert (value, lo, hi) == pytest.approx((0.60, 0.55, 0.65))
    assert terms["correction"] == "posterior" and terms["half_sample_bounds_nats"] == [0.46, 0.47]
    # below it (a serial stream's halves, cut by blocks, see more): the halves' value and interval stay
    value, lo, hi, terms = posterior_corrected(0.02, (0.535, 0.47, 0.60), halves)
    assert (value, lo, hi) == (0.535, 0.47, 0.60) and terms["correction"] == "half-sample"
    assert terms["posterior_shortfall_nats"] == 0.02 and "posterior_shortfall_nats" not in halves
    # no halves (too few train units): the posterior alone corrects the bound
    value, lo, hi, terms = posterior_corrected(0.10, (0.50, 0.45, 0.55), {})
    assert (value, lo, hi) == pytest.approx((0.60, 0.55, 0.65)) and terms["ci95_held_out_nats"] == (0.45, 0.55)
    # a negative shortfall never takes the estimate below the held-out bound
    value, lo, hi, terms = posterior_corrected(-0.03, (0.50, 0.45, 0.55), {})
    assert (value, lo, hi) == (0.50, 0.45, 0.55) and terms["posterior_shortfall_nats"] == -0.03


def test_a_posterior_shortfall_that_is_not_finite_leaves_the_halves_correction(monkeypatch):
    x, y, _ = _dirichlet_table(4, 3000)
    monkeypatch.setattr(TableReference, "posterior_shortfall", lambda self: float("nan"))
    r = minecli.estimate_mi(x, y, seed=0, x_kind="index", y_kind="index", critic=ONE_SPLIT, **FAST)
    assert r.half_sample["half_sample_bounds_nats"] and "posterior_shortfall_nats" not in r.half_sample
    assert math.isfinite(r.mi_nats) and r.mi_nats > r.held_out_bound_nats


def test_a_posteriors_sums_by_seen_cells_equal_the_dense_tables():
    # The per-seen-cell shortcut must give the dense computation's sums in both orientations (an orientation
    # whose pseudo-counts vary by line falls back to the dense path itself), small blocks included.
    from minecli.core.reference import _posterior_sums

    x, y, _ = _dirichlet_table(5, 1500, vx=40, vy=24, alpha=0.3)
    for c in _fit_table(torch.tensor(x), torch.tensor(y), 40, 24):
        if c.rows in (None, "mode"):  # the mode table's posterior is core/mode_posterior.py's
            continue
        for by_column in (False, True):
            fast = _posterior_sums(c, by_column)
            assert fast.shape == (24 if by_column else 40, 3)
            torch.testing.assert_close(fast, _posterior_sums(c, by_column, block=64, dense=True), rtol=1e-9, atol=1e-9)
