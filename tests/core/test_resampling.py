"""Resampling where the dependence lives: correlation lengths from the data, units, and the permutation null."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from minecli.core.data import FrameBank
from minecli.core.resampling import (Units, bootstrap_interval, p_value_text, permutation_p, resampling_units,
                                     split_units, unit_offsets)
from minecli.core.selection import ReferenceFit, ReferenceSelection, _se
from minecli.core.serial import correlation_length, stream_correlation_length
from minecli.testing import ar1_frames as ar1


def test_the_correlation_length_is_measured_from_the_data():
    rng = np.random.default_rng(0)
    # exp(-lag / 30) falls below 1/e at lag 30; 10,000 frames measure it to within ~20% (sampling
    # noise of an autocorrelation near 0.37 over ~300 independent stretches, plus the 15% lag grid).
    assert 24 <= correlation_length(torch.from_numpy(ar1(10_000, 30, rng)[:, 0])) <= 40
    assert correlation_length(torch.randn(10_000)) == 1
    # Tokens held for 5 frames: P(same token at lag l) falls below 1/e of its excess near l = 3-4.
    tok = torch.from_numpy(np.repeat(rng.integers(0, 16, 2000), 5))
    assert 3 <= correlation_length(tok) <= 5


def test_per_utterance_offsets_lengthen_it_and_utterance_boundaries_are_respected():
    rng = np.random.default_rng(1)
    xs = [ar1(250, 5, rng) + rng.standard_normal(2).astype(np.float32) for _ in range(40)]
    x = torch.from_numpy(np.concatenate(xs))
    offsets = torch.arange(41) * 250
    # An offset with the same variance as the AR part keeps the autocorrelation above 0.5 at any lag
    # inside an utterance: the frames of one utterance are dependent at any distance.
    assert stream_correlation_length(x, x, offsets) == 250
    # Without offsets the same process decays in ~5 frames.
    ys = torch.from_numpy(np.concatenate([ar1(250, 5, rng) for _ in range(40)]))
    assert 4 <= stream_correlation_length(ys, ys, offsets) <= 7


def _bank(xs: list[np.ndarray], ys: list[np.ndarray]) -> FrameBank:
    return FrameBank.from_lists([torch.from_numpy(a) for a in xs], [torch.from_numpy(b) for b in ys])


def test_units_follow_the_correlation_length():
    rng = np.random.default_rng(2)
    frames = FrameBank.from_arrays(torch.randn(2000, 2), torch.randn(2000, 2))
    assert resampling_units(frames, 1) == Units("frames", 1, 1)
    series = resampling_units(frames, 30)
    assert series.kind == "blocks" and series.block == 150  # five correlation lengths
    assert unit_offsets(frames, series).tolist()[:3] == [0, 150, 300]
    few = _bank([ar1(250, 5, rng) for _ in range(8)], [ar1(250, 5, rng) for _ in range(8)])
    assert resampling_units(few, 1).describe() == "blocks of 13 consecutive frames"  # n^(1/3), as before
    assert resampling_units(few, 10).describe() == "blocks of 50 consecutive frames"
    assert resampling_units(few, 48).kind == "utterances"  # blocks of 240 do not fit twice in 250 frames


def test_the_selection_rule_resamples_the_validation_blocks_of_a_long_series():
    # A series cut into blocks leaves validation with 5 blocks of 138 frames, correlated over ~23
    # frames. How much the trained critic beats the reference varies from block to block (sd 0.1
    # here), so the standard error of the difference is ~0.1/sqrt(5) = 0.045. Resampling short runs
    # of frames across the blocks (as when the correlation length was not measured) read ~0.01 and let
    # a trained critic that overfits the series win on noise. Over 40 draws the mean SE must reach
    # 0.8 of the true one (a bootstrap over 5 units, corrected by 5/4, scatters by ~30% per draw).
    rng = np.random.default_rng(3)
    ses = []
    for _ in range(40):
        xs = [ar1(138, 23, rng, 1) for _ in range(5)]
        bank = _bank(xs, xs)
        assert split_units(bank, bank.x[:, 0]).kind in ("utterances", "blocks")
        ref_tj = torch.zeros(bank.n_frames)
        gap = torch.cat([torch.full((138,), float(rng.standard_normal()) * 0.1) for _ in range(5)])
        fit = ReferenceFit(None, 0.0, "gaussian", ref_tj, torch.zeros(bank.n_frames, 4))  # type: ignore[arg-type]
        sel = ReferenceSelection(None, None, 1, 1, True, bank, (bank, torch.zeros(0)), None, _dv,  # type: ignore[arg-type]
                                 torch.device("cpu"), seed=0)
        (trained, ref), m = sel.resampled([(gap + bank.x[:, 0] * 0.01, torch.zeros(bank.n_frames, 4)), (fit.tj, fit.tm)])
        ses.append(_se(trained - ref, m))
    assert np.mean(ses) > 0.8 * 0.1 / math.sqrt(5), np.mean(ses)


def test_p_value_text_shows_the_floor():
    assert p_value_text(0.01, 99) == "< 0.01"
    assert p_value_text(0.05, 19) == "< 0.05"
    assert p_value_text(0.23, 99) == "0.23"
    assert p_value_text(None, 0) is None


class _ProductCritic(torch.nn.Module):
    """T(x, y) = 3 x y on the first dimension: a critic that reads any shared drift as dependence."""

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0]

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, 0, 0]

    def pair_scores(self, ax: torch.Tensor, ay: torch.Tensor, _: object) -> tuple[torch.Tensor, None]:
        return 3 * ax * ay, None


def _dv(tj: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
    return tj.mean() - (torch.logsumexp(tm.reshape(-1), 0) - math.log(tm.numel()))


def test_re_pairing_utterances_keeps_the_false_positive_rate_at_its_nominal_level():
    # Independent streams, each AR(1) over ~30 frames plus a per-utterance offset, 8 utterances: the
    # statistic's noise lives at the level of utterances. Under independence a valid test rejects at
    # p <= 0.05 in 5% of draws: 2 of 40 expected, 7 or more has probability 0.0005 (binomial).
    # Re-pairing single frames ignores that noise and rejects far more often.
    rng = np.random.default_rng(3)
    gen = torch.Generator().manual_seed(0)
    critic = _ProductCritic()
    unit_hits, frame_hits = 0, 0
    for _ in range(40):
        xs = [ar1(250, 30, rng) + rng.standard_normal(2).astype(np.float32) for _ in range(8)]
        ys = [ar1(250, 30, rng) + rng.standard_normal(2).astype(np.float32) for _ in range(8)]
        bank = _bank(xs, ys)
        tj = 3 * bank.x[:, 0] * bank.y[:, 0]
        tm = 3 * bank.x[:, 0, None] * bank.y[torch.randperm(bank.n_frames, generator=gen)[:, None], 0]
        units = resampling_units(bank, stream_correlation_length(bank.x, bank.y, bank.offsets))
        assert units.kind == "utterances"
        unit_hits += permutation_p(_dv, critic, bank, tj, tm, 19, 1, 1, torch.device("cpu"), gen, units) <= 0.05
        frame_hits += permutation_p(_dv, critic, bank, tj, tm, 19, 1, 1, torch.device("cpu"), gen) <= 0.05
    assert unit_hits <= 6, unit_hits
    assert frame_hits >= 15, frame_hits


def _mean_coverage(utterances: Callable[[], list[np.ndarray]], draws: int, gen: torch.Generator) -> tuple[int, str]:
    """How many of ``draws`` utterance-bootstrap intervals of the mean cover 0, and how the last was made."""
    covered, method = 0, ""
    for _ in range(draws):
        xs = utterances()
        bank = _bank(xs, xs)
        tj = bank.x[:, 0].clone()
        lo, hi, method = bootstrap_interval(lambda a, b: a.mean(), bank, tj, tj[:, None], 200, gen,
                                            Units("utterances", 1, len(xs[0])))
        covered += lo <= 0.0 <= hi
    return covered, method


def test_few_units_get_a_t_interval_that_covers_the_utterance_level_noise():
    # The mean of 6 utterances with offsets sd 1 (and AR noise that averages out over 250 frames):
    # its standard error is ~1/sqrt(6). A t interval on 5 degrees of freedom covers the true mean 0 in
    # 95% of draws; percentiles of 6 resampled utterances cover it in ~85% (too narrow). Over 200
    # draws, coverage below 0.88 would be 3 binomial SE under 95%.
    rng = np.random.default_rng(4)
    covered, method = _mean_coverage(
        lambda: [np.full((250, 1), rng.standard_normal(), np.float32) + ar1(250, 5, rng, 1) * 0.1 for _ in range(6)],
        200, torch.Generator().manual_seed(1))
    assert method == "utterances (6; t interval)"
    assert covered >= 0.88 * 200, covered


def test_a_few_dozen_units_still_get_a_t_interval_that_holds_its_level():
    # 20 utterances whose effects follow a t5 distribution: bootstrap percentiles covered the mean 0 in
    # ~90% of 400 draws, the t interval on 19 degrees of freedom in ~95% (these 300 seeded draws: 88%
    # and 93%). Coverage below 0.915 would be 3 binomial SE (0.0126 each) under 95%.
    rng = np.random.default_rng(5)
    covered, method = _mean_coverage(lambda: [np.full((40, 1), rng.standard_t(5), np.float32) for _ in range(20)],
                                     300, torch.Generator().manual_seed(2))
    assert method == "utterances (20; t interval)"
    assert covered >= 0.915 * 300, covered


def test_the_null_stays_exact_with_a_handful_of_units():
    # 4 independent utterances: only 24 re-pairings exist. Drawn uniformly (identity included) the
    # observed pairing is exchangeable with them, so p <= 0.05 in at most 5% of draws: 5 of 100
    # expected, 12 or more has probability 0.002 (binomial). Re-pairing by derangements only (9
    # distinct null values) rejected in 20 of these 100 draws.
    rng = np.random.default_rng(5)
    gen = torch.Generator().manual_seed(2)
    hits = 0
    for _ in range(100):
        xs = [ar1(100, 10, rng) + rng.standard_normal(2).astype(np.float32) for _ in range(4)]
        ys = [ar1(100, 10, rng) + rng.standard_normal(2).astype(np.float32) for _ in range(4)]
        bank = _bank(xs, ys)
        tj = 3 * bank.x[:, 0] * bank.y[:, 0]
        hits += permutation_p(_dv, _ProductCritic(), bank, tj, tj[:, None], 99, 1, 1, torch.device("cpu"), gen,
                              Units("utterances", 1, 100)) <= 0.05
    assert hits <= 11, hits


class _CountingCritic(_ProductCritic):
    """The product critic, counting the frames it encodes on the y side."""

    def __init__(self) -> None:
        super().__init__()
        self.y_frames = 0

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        self.y_frames += y.shape[0]
        return super().encode_y(y)


def test_the_frame_null_encodes_y_once_when_it_fits_and_gives_the_same_p_value(monkeypatch):
    import minecli.core.resampling as resampling

    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 1)).astype(np.float32)
    y = (0.01 * x + rng.standard_normal((3000, 1))).astype(np.float32)  # weak: p well above its floor
    bank = FrameBank.from_arrays(torch.from_numpy(x), torch.from_numpy(y))
    tj = 3 * bank.x[:, 0] * bank.y[:, 0]
    tm = 3 * bank.x[:, 0, None] * bank.y[torch.randperm(3000, generator=torch.Generator().manual_seed(0))[:, None], 0]
    ps, encoded = [], []
    for budget in (resampling.ENCODE_ONCE_MAX_BYTES, 0):
        monkeypatch.setattr(resampling, "ENCODE_ONCE_MAX_BYTES", budget)
        critic = _CountingCritic()
        ps.append(permutation_p(_dv, critic, bank, tj, tm, 49, 1, 1, torch.device("cpu"),
                                torch.Generator().manual_seed(3)))
        encoded.append(critic.y_frames)
    assert 0.02 < ps[0] < 1 and ps[0] == ps[1]  # the same shuffles, the same null values
    # once: every frame; per shuffle: 49 x 3,000 (the budget of 0 turns it down after the first chunk)
    assert encoded[0] == 3000 and encoded[1] == 3000 + 49 * 3000
