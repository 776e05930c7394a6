"""``minecli depth``: the first k codebooks for every k and the chain-rule increment of each."""
from __future__ import annotations

import json
import math

import pytest

from minecli.core.depth import depth_rows, run_depth
from minecli.core.errors import ConfigError
from minecli.testing import invoke_cli as invoke

LOG4 = math.log(4)


pytestmark = pytest.mark.usefixtures("installed_plugins")


def three_codebooks(rng, split, i):
    """x: 3 independent codebooks over 4 tokens; y: one token over 16 made of codebooks 0 and 1.

    Ground truth: I(C1; Y) = log 4, I(C1, C2; Y) = 2 log 4 = I(C1..C3; Y): increments log 4, log 4, 0.
    """
    x = rng.integers(0, 4, size=(200, 3))
    return x, 4 * x[:, 0] + x[:, 1]


X3 = {"kind": "index", "vocab_size": 4, "file_codebooks": 3, "frame_rate": 100}
Y16 = {"kind": "index", "vocab_size": 16, "frame_rate": 100}


def test_increments_follow_the_chain_rule():
    rows = [{"pairing.k": str(k), "run": f"r{k}", "status": "ok", "mi_nats": m, "ci95_lo_nats": m - 0.1,
             "ci95_hi_nats": m + 0.1, "mi_bits": m / math.log(2), "mi_bits_per_second": 0.0}
            for k, m in ((2, 1.5), (1, 1.0), (3, 1.6))]
    out = depth_rows(rows, "pairing.k")
    assert [r["k"] for r in out] == [1, 2, 3]
    assert [round(r["increment_nats"], 6) for r in out] == [1.0, 0.5, 0.1]
    assert out[1]["increment_lo_nats"] == pytest.approx(0.3) and out[1]["increment_hi_nats"] == pytest.approx(0.7)


def test_depth_recovers_known_per_codebook_information(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(three_codebooks)
    cfg = write_yaml(tmp_path / "d.yaml", corpus["doc"](X3, Y16, training={"steps": 150}))
    res = run_depth(str(cfg), "x", out_dir=tmp_path / "depth", echo=lambda _l: None)
    assert [r["k"] for r in res.rows] == [1, 2, 3] and all(r["status"] == "ok" for r in res.rows)
    truth = [LOG4, LOG4, 0.0]
    for r, t in zip(res.rows, truth):
        # the increment's interval is conservative (two runs' intervals combined); a small slack covers a
        # bound still short of the exact table after 150 steps
        assert r["increment_lo_nats"] - 0.1 <= t <= r["increment_hi_nats"] + 0.1, (r, t)
        assert r["increment_nats"] == pytest.approx(t, abs=0.15)
    table = json.loads((tmp_path / "depth" / "depth.json").read_text())
    assert [row["k"] for row in table["rows"]] == [1, 2, 3]
    assert (tmp_path / "depth" / "depth.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "depth" / "depth.csv").read_text().startswith("k,status,mi_nats")
    extracted = [json.loads((tmp_path / "depth" / r["run"] / "results.json").read_text())["extraction"]["x"]["extracted"]
                 for r in res.rows]
    assert extracted == [14, 0, 0]


def test_depth_needs_a_multi_codebook_index_stream(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(three_codebooks)
    cfg = write_yaml(tmp_path / "d.yaml", corpus["doc"](X3, Y16))
    with pytest.raises(ConfigError, match="y: the stream has one codebook"):
        run_depth(str(cfg), "y", out_dir=tmp_path / "d")
    r = invoke("depth", str(cfg), "x.params.codebook=1", "--out", str(tmp_path / "d2"))
    assert r.exit_code != 0 and "x.params.codebook selects one codebook" in r.stderr
