"""``minecli sweep``: one run per grid point, one table and plot, failing points as rows, resumable."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from minecli.core.errors import ConfigError
from minecli.core.pipeline import run_config
from minecli.core.sweep import Axis, grid, parse_axes, point_name, run_sweep, split_values
from minecli.testing import invoke_cli as invoke


pytestmark = pytest.mark.usefixtures("installed_plugins")


def noisy_copy(rng, split, i):
    """x: tokens over 8; y: a float that is x plus noise (about 1 nat shared)."""
    x = rng.integers(0, 8, size=120)
    return x, (x[:, None] + 0.8 * rng.standard_normal((120, 1))).astype(np.float32)


X = {"kind": "index", "vocab_size": 8, "frame_rate": 100}
Y = {"kind": "float", "dim": 1, "frame_rate": 100}


def test_axes_and_grids():
    assert split_values("1,2,[64,64],'a,b'") == ["1", "2", "[64,64]", "'a,b'"]
    axes = parse_axes(["a.b=1,2", "c=x,y,z"])
    assert axes == [Axis("a.b", ("1", "2")), Axis("c", ("x", "y", "z"))]
    assert len(grid(axes)) == 6 and grid(axes)[1] == {"a.b": "1", "c": "y"}
    with pytest.raises(ConfigError, match="--zip needs the same number of values"):
        grid(axes, zipped=True)
    zipped = grid(parse_axes(["a=1,2", "b=3,4", "c=5"]), zipped=True)
    assert zipped == [{"a": "1", "b": "3", "c": "5"}, {"a": "2", "b": "4", "c": "5"}]
    with pytest.raises(ConfigError, match="not KEY=V1,V2"):
        parse_axes(["lag"])
    assert point_name({"pairing.lag_frames": "-2", "x": "a b"}, ["pairing.lag_frames", "x"]) == \
        "pairing.lag_frames=-2__x=a_b"


def test_a_sweep_writes_one_row_per_point_records_failures_and_resumes(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(noisy_copy)
    cfg = write_yaml(tmp_path / "s.yaml", corpus["doc"](X, Y))
    out = tmp_path / "sweep"
    calls: list[list[str]] = []

    def counting(config, args):
        calls.append(list(args))
        return run_config(config, args)

    # context 0 is invalid: that point fails with its reason, the others run
    res = run_sweep(str(cfg), parse_axes(["pairing.context_frames=1,0,3"]), out_dir=out, runner=counting,
                    echo=lambda _l: None)
    assert [r["pairing.context_frames"] for r in res.rows] == ["1", "0", "3"]
    assert [r["status"] for r in res.rows] == ["ok", "failed", "ok"]
    assert "context_frames must be at least 1" in res.rows[1]["reason"]
    assert len(calls) == 3
    with open(out / "sweep.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 3 and table[1]["status"] == "failed" and table[1]["mi_nats"] == ""
    for r, k in ((table[0], 1), (table[2], 3)):
        # x is 8 tokens, y = x + noise of sd 0.8: MI is well above 0.5 nats a frame, and a window of k
        # frames carries at most H(window) <= k log 8
        assert 0.5 < float(r["mi_nats"]) < k * np.log(8)
        assert float(r["ci95_lo_nats"]) <= float(r["mi_nats"]) <= float(r["ci95_hi_nats"])
        assert float(r["mi_bits"]) == pytest.approx(float(r["mi_nats"]) / np.log(2), rel=1e-5)
        assert float(r["ceiling_x_nats"]) > 0 and r["ceiling_y_nats"] == ""
    # context 3: the bits/s count one 3-frame window per 3 frames
    assert float(table[2]["samples_per_second"]) == pytest.approx(100 / 3, rel=1e-5)
    assert table[2]["per"] == "window" and table[0]["per"] == "frame"
    md = (out / "sweep.md").read_text()
    assert md.count("\n") == 2 + 3 and "| failed |" in md
    doc = json.loads((out / "sweep.json").read_text())  # strict JSON: json.loads rejects nothing here,
    assert doc["rows"][1]["mi_nats"] is None             # but a NaN would have been written as null
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every point shares one feature cache: the first point extracted, the last found it all cached
    first = json.loads((out / "pairing.context_frames=1" / "results.json").read_text())
    last = json.loads((out / "pairing.context_frames=3" / "results.json").read_text())
    assert first["extraction"]["x"]["extracted"] == 14 and last["extraction"]["x"]["extracted"] == 0

    # a rerun reads finished points and retries only the failed one
    calls.clear()
    again = run_sweep(str(cfg), parse_axes(["pairing.context_frames=1,0,3"]), out_dir=out, runner=counting,
                      echo=lambda _l: None)
    assert len(calls) == 1 and "pairing.context_frames=0" in calls[0]
    assert [r["mi_nats"] for r in again.rows] == [r["mi_nats"] for r in res.rows]


def test_an_interrupted_sweep_continues(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(noisy_copy)
    cfg = write_yaml(tmp_path / "s.yaml", corpus["doc"](X, Y, training={"steps": 20}))
    out = tmp_path / "sweep"
    ran: list[str] = []

    def interrupt_second(config, args):
        if len(ran) == 1:
            raise KeyboardInterrupt
        ran.append(args[-2])
        return run_config(config, args)

    axes = parse_axes(["training.seed=0,1,2"])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(str(cfg), axes, out_dir=out, runner=interrupt_second, echo=lambda _l: None)
    assert len((out / "sweep.csv").read_text().splitlines()) == 2  # header and the finished point
    ran.clear()
    res = run_sweep(str(cfg), axes, out_dir=out, runner=lambda c, a: (ran.append(a[-2]), run_config(c, a))[1],
                    echo=lambda _l: None)
    assert ran == ["training.seed=1", "training.seed=2"]
    assert [r["status"] for r in res.rows] == ["ok", "ok", "ok"]


def test_sweep_on_the_command_line(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(noisy_copy)
    cfg = write_yaml(tmp_path / "s.yaml", corpus["doc"](X, Y, training={"steps": 20}))
    out = tmp_path / "cli_sweep"
    r = invoke("sweep", str(cfg), "training.seed=0,1", "--set", "training.lr=0.002", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "2 of 2 points finished" in r.output
    assert "[1/2] training.seed=0: running" in r.stderr and "[2/2] training.seed=1:" in r.stderr
    run = json.loads((out / "training.seed=1" / "results.json").read_text())
    assert run["config"]["training"]["lr"] == 0.002
    bad = invoke("sweep", str(cfg), "training.seed")
    assert bad.exit_code != 0 and "not KEY=V1,V2" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_key_that_no_point_accepts_is_one_error_before_anything_runs(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(noisy_copy)
    cfg = write_yaml(tmp_path / "s.yaml", corpus["doc"](X, Y))
    r = invoke("sweep", str(cfg), "pairing.lag_frame=0,1", "--out", str(tmp_path / "typo"))
    assert r.exit_code != 0 and "unknown key 'pairing.lag_frame'" in r.stderr and "lag_frames" in r.stderr
    assert not (tmp_path / "typo" / "pairing.lag_frame=0").exists()
