"""Extract once, select many: codebook selections are cut at load from one cached extraction."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minecli.core.errors import ConfigError, MinecliError
from minecli.core.pipeline import extract_all, load_side, prepare
from minecli.core.sweep import parse_axes, run_sweep
from minecli.plugins.precomputed import Precomputed


pytestmark = pytest.mark.usefixtures("installed_plugins")


def three_codebooks(rng, split, i):
    """x: 3 independent codebooks over 4 tokens; y: one token over 16 made of codebooks 0 and 1."""
    x = rng.integers(0, 4, size=(150, 3))
    return x, 4 * x[:, 0] + x[:, 1]


X3 = {"kind": "index", "vocab_size": 4, "file_codebooks": 3, "frame_rate": 100}
Y16 = {"kind": "index", "vocab_size": 16, "frame_rate": 100}


def test_precomputed_selections_share_one_cache_entry(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(three_codebooks)
    base = corpus["doc"](X3, Y16)
    cfg = write_yaml(tmp_path / "sel.yaml", base)
    first = prepare(cfg, ["x.params.n_codebooks=2"])
    assert first.specs["x"].n_codebooks == 2
    assert extract_all(first, sides=("x",), progress=False)["x"]["extracted"] == 14
    for sel, cols in (("x.params.n_codebooks=1", [0]), ("x.params.n_codebooks=3", [0, 1, 2]),
                      ("x.params.codebook=2", [2])):
        prep = prepare(cfg, [sel])
        assert extract_all(prep, sides=("x",), progress=False)["x"]["extracted"] == 0, sel
        got = load_side(prep, "x", "valid")
        want = [np.load(corpus["root"] / "x" / f"valid{i:02d}.npy")[:, cols] for i in range(3)]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w)
    # the same selection through the extractor directly (CSV input reads files without the cache)
    ext = Precomputed(Precomputed.parse({**X3, "codebook": 1}))
    np.testing.assert_array_equal(ext.load_file(str(corpus["root"] / "x" / "test00.npy")).numpy(),
                                  np.load(corpus["root"] / "x" / "test00.npy")[:, [1]])


def test_precomputed_selection_errors_name_the_key():
    with pytest.raises(ConfigError, match="n_codebooks 4 is more than the file_codebooks 3"):
        Precomputed.parse({**X3, "n_codebooks": 4}, "x.params")
    with pytest.raises(ConfigError, match="codebook must be between 0 and 2"):
        Precomputed.parse({**X3, "codebook": 3}, "x.params")


def test_wrong_file_width_names_file_codebooks(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(three_codebooks)
    cfg = write_yaml(tmp_path / "w.yaml", corpus["doc"]({**X3, "file_codebooks": 4}, Y16))
    with pytest.raises(MinecliError, match=r"expected \[T, 4\] \(set params.file_codebooks"):
        extract_all(prepare(cfg), sides=("x",), progress=False)


def test_a_sweep_over_n_codebooks_extracts_once(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(three_codebooks)
    cfg = write_yaml(tmp_path / "sel.yaml", corpus["doc"](X3, Y16, training={"steps": 20}))
    res = run_sweep(str(cfg), parse_axes(["x.params.n_codebooks=1,2,3"]), out_dir=tmp_path / "sw",
                    echo=lambda _l: None)
    extracted = [json.loads((tmp_path / "sw" / r["run"] / "results.json").read_text())["extraction"]["x"]["extracted"]
                 for r in res.rows]
    assert extracted == [14, 0, 0]
    stores = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert stores == ["precomputed", "precomputed"]  # one for x (all 3 columns), one for y
