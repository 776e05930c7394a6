"""Frame alignment on synthetic ramps: each frame's value is the time of its centre, in seconds."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from minecli.core.pairing import align_pair, grid_index, plan_alignment

RATES = (12.5, 25.0, 50.0, 75.0, 100.0)
PAIRS = [p for p in itertools.product(RATES, RATES) if p[0] != p[1]]


def ramp(rate: float, seconds: float, extra: int = 0) -> torch.Tensor:
    """Frame centres of `seconds` of audio at `rate` frames/s (plus `extra` frames), as ``[T, 1]`` float64."""
    n = int(round(seconds * rate)) + extra
    return ((torch.arange(n, dtype=torch.float64) + 0.5) / rate)[:, None]


def is_integer_ratio(a: float, b: float) -> bool:
    hi, lo = max(a, b), min(a, b)
    return abs(hi / lo - round(hi / lo)) < 1e-9


@pytest.mark.parametrize("rate_x, rate_y", PAIRS, ids=[f"{a:g}-{b:g}Hz" for a, b in PAIRS])
def test_auto_plan_uses_integer_repeats_when_possible_else_the_faster_grid(rate_x, rate_y):
    plan = plan_alignment(rate_x, rate_y)
    assert plan.rate == max(rate_x, rate_y)
    if is_integer_ratio(rate_x, rate_y):
        assert plan.mode == "repeat"
        slow_repeat = round(max(rate_x, rate_y) / min(rate_x, rate_y))
        assert (plan.x_repeat, plan.y_repeat) == ((slow_repeat, 1) if rate_x < rate_y else (1, slow_repeat))
    else:
        assert plan.mode == "grid" and (plan.x_repeat, plan.y_repeat) == (1, 1)


@pytest.mark.parametrize("rate_x, rate_y", PAIRS, ids=[f"{a:g}-{b:g}Hz" for a, b in PAIRS])
@pytest.mark.parametrize("extra_fast", [0, 1, -1])
def test_aligned_ramps_differ_by_at_most_half_a_slow_frame(rate_x, rate_y, extra_fast):
    seconds = 2.0
    slow_rate, fast_rate = min(rate_x, rate_y), max(rate_x, rate_y)
    # The faster stream may have a frame more or less than its nominal length (STFT centring, codec padding).
    x = ramp(rate_x, seconds, extra_fast if rate_x == fast_rate else 0)
    y = ramp(rate_y, seconds, extra_fast if rate_y == fast_rate else 0)
    plan = plan_alignment(rate_x, rate_y)
    out = align_pair(x, y, plan, rate_x, rate_y, max_length_diff=2)
    assert out is not None
    xa, ya = out
    assert xa.shape == ya.shape and xa.shape[1] == 1
    n_fast = int(round(seconds * fast_rate))
    # about the whole utterance survives, on the faster grid
    assert abs(xa.shape[0] - n_fast) <= 1
    diff = (xa - ya).abs().max().item()
    assert diff <= 0.5 / slow_rate + 1e-9, f"{diff * 1000:.2f} ms apart; half a slow frame is {500 / slow_rate:.2f} ms"
    # the faster stream is kept as it is, each frame once and in order
    fast_aligned = xa if rate_x == fast_rate else ya
    fast_in = x if rate_x == fast_rate else y
    torch.testing.assert_close(fast_aligned, fast_in[: fast_aligned.shape[0]])
    # the slower stream is only ever repeated, never reordered
    slow_aligned = ya if rate_x == fast_rate else xa
    assert bool((slow_aligned[1:] >= slow_aligned[:-1]).all())


@pytest.mark.parametrize("rate_x, rate_y", [p for p in PAIRS if is_integer_ratio(*p)],
                         ids=[f"{a:g}-{b:g}Hz" for a, b in PAIRS if is_integer_ratio(a, b)])
def test_integer_ratios_reproduce_repeat_interleave(rate_x, rate_y):
    seconds = 1.6
    x, y = ramp(rate_x, seconds), ramp(rate_y, seconds)
    factor = round(max(rate_x, rate_y) / min(rate_x, rate_y))
    xa, ya = align_pair(x, y, plan_alignment(rate_x, rate_y), rate_x, rate_y, max_length_diff=0)
    if rate_x < rate_y:
        expect_x, expect_y = x.repeat_interleave(factor, dim=0), y
    else:
        expect_x, expect_y = x, y.repeat_interleave(factor, dim=0)
    torch.testing.assert_close(xa, expect_x)
    torch.testing.assert_close(ya, expect_y)
    # the nearest-frame grid gives the same answer as repeating, for integer ratios
    slow_n, fast_n = min(x.shape[0], y.shape[0]), max(x.shape[0], y.shape[0])
    idx = grid_index(slow_n, fast_n, min(rate_x, rate_y), max(rate_x, rate_y))
    torch.testing.assert_close(idx, torch.arange(slow_n).repeat_interleave(factor))


def test_encodec_75_vs_spectrogram_100_hz_uses_nearest_frames():
    # 75 Hz tokens against a centred 100 Hz STFT of one second: 75 vs 101 frames.
    codes = torch.arange(75)[:, None]  # index stream: token id = frame number
    spec = ramp(100.0, 1.0, extra=1).float()
    plan = plan_alignment(75.0, 100.0)
    assert plan.mode == "grid" and plan.rate == 100.0
    xa, ya = align_pair(codes, spec, plan, 75.0, 100.0, max_length_diff=5)
    assert xa.dtype == torch.int64 and ya.dtype == torch.float32
    assert xa.shape[0] == ya.shape[0] == 100  # the 101st spectrogram frame has no token
    # token k covers [k/75, (k+1)/75): the spectrogram frame's centre lies inside it
    start = xa[:, 0].double() / 75.0
    assert bool(((ya[:, 0].double() >= start - 1e-6) & (ya[:, 0].double() < start + 1 / 75.0)).all())
    # every token is used once or twice (4 fast frames per 3 slow frames)
    counts = torch.bincount(xa[:, 0], minlength=75)
    assert int(counts.min()) >= 1 and int(counts.max()) <= 2 and int(counts.sum()) == 100


@pytest.mark.parametrize("rate_x, rate_y", [(75.0, 100.0), (25.0, 100.0), (100.0, 12.5)])
def test_lengths_differing_by_more_than_max_length_diff_are_dropped(rate_x, rate_y):
    plan = plan_alignment(rate_x, rate_y)
    x, y = ramp(rate_x, 2.0), ramp(rate_y, 2.0)
    assert align_pair(x, y, plan, rate_x, rate_y, 3) is not None
    # the faster stream loses 4 frames: 4 > 3
    if rate_x > rate_y:
        x = x[:-4]
    else:
        y = y[:-4]
    assert align_pair(x, y, plan, rate_x, rate_y, 3) is None
    assert align_pair(x, y, plan, rate_x, rate_y, 4) is not None


def test_explicit_repeat_factors_override_auto():
    # the original pipeline's x_repeat: 4 for 25 Hz tokens against a 100 Hz spectrogram
    plan = plan_alignment(25.0, 100.0, 4, 1)
    assert (plan.mode, plan.x_repeat, plan.y_repeat, plan.rate) == ("repeat", 4, 1, 100.0)
    x, y = torch.arange(10)[:, None], torch.randn(41, 3)
    xa, ya = align_pair(x, y, plan, 25.0, 100.0, 5)
    assert xa.shape[0] == ya.shape[0] == 40
    torch.testing.assert_close(xa[:, 0], torch.arange(10).repeat_interleave(4))
    torch.testing.assert_close(ya, y[:40])
    # a mixed pair: 75 Hz repeated twice and 50 Hz three times meet at 150 Hz
    plan = plan_alignment(75.0, 50.0, 2, 3)
    assert plan.rate == 150.0
    xa, ya = align_pair(ramp(75.0, 1.0), ramp(50.0, 1.0), plan, 75.0, 50.0, 0)
    assert xa.shape[0] == 150
    assert (xa - ya).abs().max().item() <= 0.5 / 50.0 + 1e-9


def test_equal_rates_are_left_alone():
    plan = plan_alignment(50.0, 50.0)
    assert (plan.mode, plan.x_repeat, plan.y_repeat, plan.rate) == ("repeat", 1, 1, 50.0)
    x, y = torch.randn(20, 2), torch.randn(22, 4)
    xa, ya = align_pair(x, y, plan, 50.0, 50.0, 2)
    torch.testing.assert_close(xa, x)
    torch.testing.assert_close(ya, y[:20])
    assert align_pair(x, y, plan, 50.0, 50.0, 1) is None
    assert math.isclose(plan.rate, 50.0)
