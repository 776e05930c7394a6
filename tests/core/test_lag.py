"""pairing.lag_frames / lag_ms: y shifted against x, so a lag sweep finds a planted delay."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minecli.core.errors import ConfigError
from minecli.core.pairing import lag_in_frames, shift_pair
from minecli.core.pipeline import build_banks, extract_all, prepare
from minecli.core.sweep import parse_axes, run_sweep

DELAY = 3


pytestmark = pytest.mark.usefixtures("installed_plugins")


def delayed(rng, split, i):
    """x: tokens over 8, independent in time; y: x delayed by DELAY frames plus noise."""
    x = rng.integers(0, 8, size=160)
    y = np.concatenate([rng.integers(0, 8, size=DELAY), x[:-DELAY]]) + 0.5 * rng.standard_normal(160)
    return x, y.astype(np.float32)[:, None]


X = {"kind": "index", "vocab_size": 8, "frame_rate": 100}
Y = {"kind": "float", "dim": 1, "frame_rate": 100}


def test_shift_pairs_x_t_with_y_t_plus_lag_and_trims_the_ends():
    x, y = torch.arange(6)[:, None], torch.arange(6)[:, None] + 100
    a, b = shift_pair(x, y, 2)
    assert a[:, 0].tolist() == [0, 1, 2, 3] and b[:, 0].tolist() == [102, 103, 104, 105]
    a, b = shift_pair(x, y, -2)
    assert a[:, 0].tolist() == [2, 3, 4, 5] and b[:, 0].tolist() == [100, 101, 102, 103]
    a, b = shift_pair(x, y, 9)
    assert a.shape[0] == b.shape[0] == 0
    assert lag_in_frames(0, 30.0, 100.0) == 3 and lag_in_frames(0, -40.0, 75.0) == -3 and lag_in_frames(2, None, 50) == 2


def test_lag_in_the_pipeline_and_its_errors(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(delayed)
    cfg = write_yaml(tmp_path / "lag.yaml", corpus["doc"](X, Y, pairing={"normalization": "none"}))
    prep = prepare(cfg, ["pairing.lag_ms=30"])
    extract_all(prep, progress=False)
    banks, stats, _ = build_banks(prep)
    assert stats["alignment"]["lag_frames"] == DELAY and stats["train"]["frames"] == 8 * (160 - DELAY)
    # at the planted delay, y is x plus noise on every paired frame
    resid = banks["train"].y[:, 0] - banks["train"].x[:, 0].float()
    assert float(resid.abs().max()) < 5 * 0.5 and abs(float(resid.std()) - 0.5) < 0.05
    with pytest.raises(ConfigError, match="lag_frames or pairing.lag_ms, not both"):
        prepare(cfg, ["pairing.lag_ms=30", "pairing.lag_frames=2"])


def test_a_lag_sweep_peaks_at_the_planted_delay(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(delayed)
    cfg = write_yaml(tmp_path / "lag.yaml", corpus["doc"](X, Y))
    res = run_sweep(str(cfg), parse_axes(["pairing.lag_frames=-3,0,2,3,4,6"]), out_dir=tmp_path / "sw",
                    echo=lambda _l: None)
    mi = {int(r["pairing.lag_frames"]): r["mi_nats"] for r in res.rows}
    assert max(mi, key=mi.get) == DELAY
    # Ground truth at the delay: y = x + N(0, 0.5^2) with x uniform over 8 integers is about 1.3 nats;
    # a lower bound from 60 steps reaches well over half of it. At every other lag x and y are
    # independent (x is white), so the bound stays near 0; 0.1 nats allows its test-split noise.
    assert mi[DELAY] > 0.8
    assert all(v < 0.1 for k, v in mi.items() if k != DELAY)
    lo = {int(r["pairing.lag_frames"]): r["ci95_lo_nats"] for r in res.rows}
    assert lo[DELAY] > max(r["ci95_hi_nats"] for r in res.rows if int(r["pairing.lag_frames"]) != DELAY)
