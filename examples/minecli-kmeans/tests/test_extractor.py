"""The kmeans extractor: the minecli contract, its spec, the saved codebook, and a whole run."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch
import yaml

import minecli_kmeans
from minecli import ConfigError, MinecliError, PluginError, StreamSpec, make_extractor, run_config
from minecli.testing import check_extractor
from minecli_kmeans import KMeansTokens

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"base": "mel", "base_params": {"n_mels": 16}, "n_clusters": 8}


def test_keeps_the_minecli_contract(registry):
    report = check_extractor("kmeans", SMALL)
    assert report.spec == StreamSpec("index", 100.0, vocab_size=8, n_codebooks=1, sample_rate=16000)
    assert report.edge_cases["silence"].startswith("ok")
    assert "16000" in report.edge_cases["wrong_rate"]


def test_contract_over_a_float_stream_at_another_rate(registry):
    params = {"base": "complex_spec", "base_params": {"n_fft": 64, "sample_rate": 24000, "frame_rate": 75},
              "n_clusters": 4}
    report = check_extractor("kmeans", params)
    assert (report.spec.frame_rate, report.spec.sample_rate, report.spec.vocab_size) == (75.0, 24000, 4)


def test_spec_follows_the_base_stream_and_needs_no_fit(registry):
    ext = make_extractor("kmeans", {"base": "mel", "base_params": {"frame_rate": 50, "sample_rate": 8000},
                                    "n_clusters": 32})
    assert ext.spec() == StreamSpec("index", 50.0, vocab_size=32, n_codebooks=1, sample_rate=8000)
    assert ext.reads_audio is True and ext.needs_path is False


def test_bad_params_are_clear_errors(registry):
    with pytest.raises(ConfigError, match="n_clusters must be at least 2"):
        make_extractor("kmeans", {"n_clusters": 1})
    with pytest.raises(ConfigError, match="unknown key 'params.base_params.n_mel'. Did you mean 'n_mels'"):
        make_extractor("kmeans", {"base_params": {"n_mel": 40}}).spec()
    with pytest.raises(PluginError, match="Unknown extractor 'mell'. Did you mean 'mel'"):
        make_extractor("kmeans", {"base": "mell"}).spec()
    with pytest.raises(ConfigError, match="kmeans clusters float frames, but 'phones' gives an index stream"):
        make_extractor("kmeans", {"base": "phones"}).spec()


def test_unfitted_extractor_says_how_to_fit(registry):
    ext = make_extractor("kmeans", SMALL)
    with pytest.raises(MinecliError, match=r"no codebook yet.*fit\(train_paths, cache_dir\)"):
        ext(torch.zeros(1, 1600), 16000)


def test_codebook_is_saved_and_found_again(registry, audio_files, tmp_path, monkeypatch):
    train = audio_files(3, "train")
    cache = tmp_path / "cache"
    first = make_extractor("kmeans", SMALL)
    first.fit(train, str(cache))
    saved = list((cache / "kmeans").glob("codebook-*.safetensors"))
    assert [str(p) for p in saved] == [first.codebook_path]
    assert first.codebook.shape == (8, 16)

    # A second run with the same inputs reads the file instead of clustering again.
    def no_training(self, paths):
        raise AssertionError("the codebook was fitted again although it was saved")

    monkeypatch.setattr(KMeansTokens, "_train", no_training)
    second = make_extractor("kmeans", SMALL)
    second.fit(list(reversed(train)), str(cache))  # the order of the filelist does not matter
    assert second.codebook_path == first.codebook_path
    assert torch.equal(second.codebook, first.codebook)
    assert second.fingerprint() == first.fingerprint()
    wave = torch.from_numpy(__import__("soundfile").read(train[0], dtype="float32")[0])[None]
    assert torch.equal(first(wave, 16000), second(wave, 16000))


def test_fingerprint_follows_the_codebook(registry, audio_files, tmp_path):
    train = audio_files(4, "train")
    cache = str(tmp_path / "cache")
    unfitted = make_extractor("kmeans", SMALL).fingerprint()
    a = make_extractor("kmeans", SMALL)
    a.fit(train, cache)
    b = make_extractor("kmeans", SMALL)
    b.fit(train[:3], cache)  # another train split
    c = make_extractor("kmeans", {**SMALL, "seed": 1})
    c.fit(train, cache)
    prints = {unfitted, a.fingerprint(), b.fingerprint(), c.fingerprint()}
    assert len(prints) == 4
    assert len(list(Path(cache, "kmeans").glob("codebook-*.safetensors"))) == 3
    # the same train split and params find the same codebook, hence the same cache entry
    again = make_extractor("kmeans", SMALL)
    again.fit(train, cache)
    assert again.fingerprint() == a.fingerprint()


def test_load_codebook_checks_the_shape(registry, audio_files, tmp_path):
    ext = make_extractor("kmeans", SMALL)
    ext.fit(audio_files(3), str(tmp_path / "cache"))
    other = make_extractor("kmeans", {**SMALL, "n_clusters": 4})
    with pytest.raises(MinecliError, match=r"has shape \(8, 16\), expected \(4, 16\)"):
        other.load_codebook(ext.codebook_path)


def test_package_declares_its_entry_point():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = meta["project"]["entry-points"]["minecli.plugins"]["kmeans"]
    assert target == minecli_kmeans.__name__
    assert hasattr(minecli_kmeans.register_extractors, "minecli_impl")
    assert meta["project"]["version"] == minecli_kmeans.__version__


def test_runs_end_to_end_in_a_config(registry, filelists, tmp_path):
    doc = {
        "data": {split: str(path) for split, path in filelists.items()} | {"cache_dir": str(tmp_path / "cache")},
        "x": {"extractor": "kmeans", "params": SMALL},
        "y": {"extractor": "mel", "params": {"n_mels": 16}},
        "critic": {"hidden_dims": [16]},
        "estimator": {"n_negatives": 4, "eval_negatives": 8},
        "training": {"steps": 20, "batch_size": 32, "validate_every": 10, "bootstrap": 20, "null_permutations": 0,
                     "progress": False, "threads": 1, "device": "cpu"},
        "output": {"dir": str(tmp_path / "out"), "save_every": 10},
    }
    config = tmp_path / "pair.yaml"
    config.write_text(yaml.safe_dump(doc))
    result = run_config(str(config))
    out = result.document
    assert out["streams"]["x"]["extractor"] == "kmeans"
    assert out["streams"]["x"]["spec"]["vocab_size"] == 8
    assert out["frames"]["test"] > 0 and out["pairs_dropped"]["test"] == 0
    assert torch.isfinite(torch.tensor(out["mi_nats"]))
    assert json.loads((tmp_path / "out" / "results.json").read_text())["mi_nats"] == out["mi_nats"]
    assert len(list((tmp_path / "cache" / "kmeans").glob("codebook-*.safetensors"))) == 1
    # a second run finds the codebook and every cached token again
    doc["output"]["dir"] = str(tmp_path / "out2")
    config.write_text(yaml.safe_dump(doc))
    again = run_config(str(config)).document
    assert again["extraction"]["x"]["extracted"] == 0
    assert again["extraction"]["x"]["store"] == out["extraction"]["x"]["store"]
