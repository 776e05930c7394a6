"""A single array of serially correlated frames is split in gapped blocks, never frame by frame."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import minecli
from minecli.core.errors import MinecliError
from minecli.core.serial import series_blocks
from minecli.testing import ar1_frames as ar1


FAST = dict(progress=False, steps=200, validate_every=50, hidden_dims=[32, 32], seed=0)


def _independent_series(n_utts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent streams, AR(1) over ~30 frames plus per-utterance offsets, concatenated."""
    rng = np.random.default_rng(seed)
    xs = [ar1(250, 30, rng) + 0.5 * rng.standard_normal(2).astype(np.float32) for _ in range(n_utts)]
    ys = [ar1(250, 30, rng) + 0.5 * rng.standard_normal(2).astype(np.float32) for _ in range(n_utts)]
    return np.concatenate(xs), np.concatenate(ys)


def test_independent_autocorrelated_frames_as_one_array_read_no_dependence():
    x, y = _independent_series(40, seed=0)
    with pytest.warns(UserWarning, match=r"serially correlated \(correlation length \d+ frames"):
        r = minecli.estimate_mi(x, y, null_permutations=19, **FAST)
    # The truth is 0. A random frame split read 1.67 nats here (test frames beside their training
    # neighbours); held-out blocks leave only test noise, a few hundredths of a nat at most.
    assert r.mi_nats < 0.05, r
    assert r.p_value > 0.05, r
    assert f"p {r.p_value_text} (19 permutations of {r.permutation_unit})" in str(r)
    assert r.permutation_unit in ("utterances", ) or r.permutation_unit.startswith("blocks")
    assert any("contiguous blocks" in w for w in r.warnings)
    # kNN on correlated frames reads temporal neighbours as dependence (4.31 nats here): not given.
    assert r.baseline["method"] is None and "serially correlated" in r.baseline["reason"]


def test_exchangeable_rows_are_still_split_one_by_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 2)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no serial-correlation warning for shuffled rows
        r = minecli.estimate_mi(x, x + rng.standard_normal(x.shape).astype(np.float32), null_permutations=0,
                                bootstrap=50, **FAST)
    assert r.ci_method.startswith("frames") and r.correlation_length_frames == 1
    assert r.baseline["method"] is not None


def test_serial_iid_overrides_and_a_short_series_is_a_clear_error():
    x, y = _independent_series(8, seed=2)  # 2,000 frames: too few for 12 blocks of ~6 x 40 frames
    with pytest.raises(MinecliError, match=r"serially correlated over about \d+ frames.*pass per-utterance lists"):
        minecli.estimate_mi(x, y, **FAST)
    r = minecli.estimate_mi(x, y, serial="iid", null_permutations=0, bootstrap=50, baseline=False, **FAST)
    assert not any("contiguous blocks" in w for w in r.warnings)
    with pytest.raises(MinecliError, match="serial must be"):
        minecli.estimate_mi(x, y, serial="yes", **FAST)


def test_blocks_leave_gaps_of_two_correlation_lengths():
    blocks, block, gap = series_blocks(10_000, 30)
    assert (block, gap) == (180, 60)
    assert all(b.start - a.stop == 60 for a, b in zip(blocks, blocks[1:]))
    assert blocks[-1].stop <= 10_000 and len(blocks) == 41
