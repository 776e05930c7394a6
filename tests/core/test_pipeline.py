"""``minecli run`` end to end: filelists or the original CSVs -> cache -> pairing -> training -> results."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from minecli import Extractor, MinecliError, StreamSpec
from minecli.core import trainer as trainer_mod
from minecli.core.config import load_config
from minecli.core.pipeline import build_banks, extract_all, extract_config, prepare, run_config, validate_config
from minecli.core.registry import get_registry
from minecli.testing import invoke_cli as invoke

LN2 = math.log(2.0)


pytestmark = pytest.mark.usefixtures("installed_plugins")


def aligned_frames(n_samples: int) -> int:
    """Frames of one utterance after pairing the small config's streams.

    mel: hop 160, centred -> 1 + n // 160 frames at 100 Hz; complex_spec at 50 Hz: hop 320 -> 1 + n // 320
    frames, each repeated twice. The pair keeps the shorter length.
    """
    return min(1 + n_samples // 160, 2 * (1 + n_samples // 320))


# ----------------------------------------------------------------------------- a fake extractor plugin
class FlakyEnergy(Extractor):
    """Frame energy at 100 Hz; ``interrupt_on`` makes the Nth call raise KeyboardInterrupt."""

    name = "flaky_energy"
    summary = "frame energy (test extractor)"
    calls: list[str] = []
    interrupt_on: int | None = None

    def spec(self) -> StreamSpec:
        return StreamSpec("float", 100.0, dim=1, sample_rate=16000)

    def __call__(self, wave, sample_rate, path=None):
        type(self).calls.append(path)
        if type(self).interrupt_on == len(type(self).calls):
            raise KeyboardInterrupt
        n = wave.shape[1] // 160 * 160
        return wave[0, :n].reshape(-1, 160).pow(2).mean(1, keepdim=True)


@pytest.fixture
def flaky_plugin(register_extractors):
    """Register FlakyEnergy as a plugin for one test."""
    FlakyEnergy.calls = []
    FlakyEnergy.interrupt_on = None
    register_extractors("flaky", FlakyEnergy)
    yield FlakyEnergy
    FlakyEnergy.calls = []
    FlakyEnergy.interrupt_on = None


# ----------------------------------------------------------------------------- validate
def test_validate_describes_the_run(run_config_file, tmp_path):
    text = validate_config(run_config_file())
    assert text.splitlines()[0].endswith(": OK")
    assert "mel -> float 8-d @ 100 Hz" in text
    assert "complex_spec -> float 66-d @ 50 Hz" in text
    assert "y x2, 100 Hz" in text
    assert "train 5 files, valid 2 files, test 2 files" in text
    # the critic auto picks for two float streams, and the plain one when the config asks for it
    assert "  critic: mlp on concatenated head outputs + quadratic rank 64" in text.splitlines()
    plain = validate_config(run_config_file(), ["critic.form=mlp"])
    assert "  critic: mlp on concatenated head outputs" in plain.splitlines()
    # two float streams also get the Gaussian reference critic, unless it is turned off
    assert any(line.startswith("  reference: gaussian") for line in text.splitlines())
    off = validate_config(run_config_file(), ["critic.reference=false"])
    assert "reference:" not in off
    assert not (tmp_path / "cache").exists(), "validate extracts nothing"
    assert not (tmp_path / "out").exists(), "validate writes nothing"


def test_validate_through_the_cli_reports_problems_in_one_line_per_problem(run_config_file):
    path = run_config_file()
    result = invoke("validate", str(path), "training.stepz=3", "x.extractor=mell")
    assert result.exit_code == 1
    assert "2 problems" in result.stderr
    assert "Did you mean 'steps'?" in result.stderr and "Did you mean 'mel'?" in result.stderr
    ok = invoke("validate", str(path), "training.steps=3")
    assert ok.exit_code == 0 and ": OK" in ok.stdout


def test_validate_loads_no_model_weights(run_doc, write_yaml, tmp_path):
    if "encodec" not in get_registry().names("extractor"):
        pytest.skip("the encodec plugin is not registered")
    doc = run_doc(x={"extractor": "encodec", "params": {"bandwidth": 1.5}},
                  y={"extractor": "complex_spec", "params": {"n_fft": 64, "frame_rate": 75, "sample_rate": 24000}})
    path = write_yaml(tmp_path / "encodec.yaml", doc)
    script = textwrap.dedent(f"""
        import json, sys
        from minecli.cli import cli
        try:
            cli.main(args=["validate", {str(path)!r}], prog_name="minecli", standalone_mode=False)
        finally:
            heavy = [m for m in ("encodec", "transformers", "s3tokenizer", "moshi") if m in sys.modules]
            print(json.dumps({{"heavy": heavy}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "encodec -> index 2x1024 @ 75 Hz" in proc.stdout
    assert json.loads(lines[-1]) == {"heavy": []}


# ----------------------------------------------------------------------------- extraction and the cache
def shard_times(cache: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in cache.rglob("shard-*.safetensors")}


def test_a_second_extraction_extracts_nothing(run_config_file, tmp_path):
    path = run_config_file()
    prep = prepare(path)
    first = extract_all(prep, progress=False)
    assert {s: (c["extracted"], c["cached"]) for s, c in first.items()} == {"x": (9, 0), "y": (9, 0)}
    times = shard_times(tmp_path / "cache")
    assert len({Path(p).parent for p in times}) == 2, "one store per extractor configuration"

    second = extract_all(prepare(path), progress=False)
    assert {s: (c["extracted"], c["cached"]) for s, c in second.items()} == {"x": (0, 9), "y": (0, 9)}
    assert shard_times(tmp_path / "cache") == times

    # another config with the same x extractor reuses x and extracts only the new y
    other = run_config_file("other.yaml", y={"params": {"n_fft": 128, "frame_rate": 50}})
    text = extract_config(other)
    assert "x: mel: 0 extracted, 9 already cached" in text
    assert "y: complex_spec: 9 extracted, 0 already cached" in text


def test_extract_only_one_side(run_config_file):
    text = extract_config(run_config_file(), side="y")
    assert text == "y: complex_spec: 9 extracted, 0 already cached"


def test_an_interrupted_extraction_resumes_where_it_stopped(flaky_plugin, run_config_file, tmp_path):
    path = run_config_file(x={"extractor": "flaky_energy", "params": {}})
    flaky_plugin.interrupt_on = 4
    with pytest.raises(KeyboardInterrupt):
        extract_all(prepare(path), sides=("x",), progress=False)
    done = flaky_plugin.calls[:3]
    cache = tmp_path / "cache"
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")], "no partial file is left"

    flaky_plugin.interrupt_on = None
    flaky_plugin.calls = []
    counts = extract_all(prepare(path), sides=("x",), progress=False)
    assert counts["x"]["extracted"] == 9 - 3 and counts["x"]["cached"] == 3
    assert len(flaky_plugin.calls) == 6 and not set(done) & set(flaky_plugin.calls)

    # the same through the command line: interrupted, exit 130, then resumed
    flaky_plugin.calls = []
    flaky_plugin.interrupt_on = 2
    other = run_config_file("other.yaml", x={"extractor": "flaky_energy", "params": {}}, data={"cache_dir": str(tmp_path / "c2")})
    result = invoke("extract", str(other), "--side", "x")
    assert result.exit_code == 130, (result.stdout, result.stderr)
    assert "resumes" in result.stderr
    flaky_plugin.interrupt_on = None
    result = invoke("extract", str(other), "--side", "x")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "x: flaky_energy: 8 extracted, 1 already cached"


def test_missing_audio_is_reported_with_the_filelist_line(run_config_file, audio_dataset):
    lst = audio_dataset["lists"]["valid"]
    lst.write_text(lst.read_text() + "# a comment\n\nnot_there.wav\n")
    with pytest.raises(MinecliError, match=r"filelist\.valid:5: not_there\.wav"):
        prepare(run_config_file())


def test_max_files_limits_every_split(run_config_file):
    prep = prepare(run_config_file(data={"max_files": 2}))
    assert {s: len(v) for s, v in prep.items.items()} == {"train": 2, "valid": 2, "test": 2}


# ----------------------------------------------------------------------------- the original CSV format
def write_seed_features(root: Path, lengths: dict[str, list[tuple[int, int]]], vocab: int = 16, dim: int = 3,
                        seed: int = 0) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The original layout: x token ids ``[T]`` int, y float ``[T, D]``, one .npy file per utterance."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    (root / "x").mkdir(parents=True, exist_ok=True)
    (root / "y").mkdir(parents=True, exist_ok=True)
    for split, pairs in lengths.items():
        arrays[split] = {}
        for i, (tx, ty) in enumerate(pairs):
            uid = f"{split}_{i}"
            x = rng.integers(0, vocab, size=tx).astype(np.int64)
            y = (rng.normal(size=(ty, dim)) * (1 + i) + 5 * i).astype(np.float32)  # shifted, scaled per utt
            y[: min(tx, ty), 0] += x[: min(tx, ty)]  # y depends on x
            np.save(root / "x" / f"{uid}.npy", x)
            np.save(root / "y" / f"{uid}.npy", y)
            arrays[split][uid] = (x, y)
    return arrays


def write_csv(path: Path, rows: list[tuple[str, str, str]], header=("id", "x_feature", "y_feature")) -> Path:
    path.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


@pytest.fixture
def seed_csvs(tmp_path):
    """Features and CSVs as the original scripts leave them; train_2 has lengths too far apart."""
    feats = tmp_path / "features"
    lengths = {"train": [(60, 60), (50, 52), (40, 55), (70, 70)], "valid": [(30, 30), (45, 44)],
               "test": [(35, 35), (40, 40)]}
    arrays = write_seed_features(feats, lengths)
    csvs = {}
    for split, utts in arrays.items():
        # relative paths against features_dir, as generate_csv.py writes them
        csvs[split] = write_csv(tmp_path / f"{split}.csv", [(u, f"x/{u}.npy", f"y/{u}.npy") for u in utts])
    return {"features": feats, "arrays": arrays, "csvs": csvs}


def csv_doc(seed_csvs, tmp_path, **extra) -> dict:
    doc = {
        "data": {"train_csv": str(seed_csvs["csvs"]["train"]), "valid_csv": str(seed_csvs["csvs"]["valid"]),
                 "test_csv": str(seed_csvs["csvs"]["test"]), "features_dir": str(seed_csvs["features"]),
                 "cache_dir": str(tmp_path / "cache"),
                 # the original pipeline's keys in the data section
                 "normalization": "standard", "max_length_diff": 5, "x_repeat": 1, "y_repeat": 1},
        "x": {"extractor": "precomputed", "params": {"kind": "index", "vocab_size": 16}},
        "y": {"extractor": "precomputed", "params": {"kind": "float", "dim": 3}},
        "critic": {"hidden_dims": [16]},
        "estimator": {"n_negatives": 4, "eval_negatives": 8},
        "training": {"steps": 10, "batch_size": 32, "validate_every": 5, "bootstrap": 20, "null_permutations": 9,
                     "progress": False, "device": "cpu"},
        "output": {"dir": str(tmp_path / "csv_out"), "save_every": None},
    }
    for section, values in extra.items():
        doc.setdefault(section, {}).update(values)
    return doc


def test_csv_features_are_paired_and_long_mismatches_dropped(seed_csvs, write_yaml, tmp_path):
    prep = prepare(write_yaml(tmp_path / "csv.yaml", csv_doc(seed_csvs, tmp_path)))
    assert prep.source == "csv"
    assert any("pairing" in n for n in prep.notes)
    banks, stats, plan = build_banks(prep)
    assert plan.mode == "repeat" and plan.rate == 100.0
    # train_2 has 40 vs 55 frames: 15 > max_length_diff 5, so it is dropped and counted
    assert stats["train"]["dropped"] == 1 and stats["train"]["utterances"] == 3
    assert stats["train"]["dropped_examples"] == [{"id": "train_2", "x_frames": 40, "y_frames": 55}]
    assert stats["train"]["frames"] == 60 + 50 + 70
    assert (stats["valid"]["dropped"], stats["valid"]["frames"]) == (0, 30 + 44)
    assert banks["train"].names == ["train_0", "train_1", "train_3"]

    # index stream: ids kept exactly, never normalised
    arrays = seed_csvs["arrays"]
    x_train = np.concatenate([arrays["train"][u][0][:n] for u, n in (("train_0", 60), ("train_1", 50), ("train_3", 70))])
    assert banks["train"].x.dtype == torch.int64
    np.testing.assert_array_equal(banks["train"].x[:, 0].numpy(), x_train)

    # float stream: statistics from the (kept) train frames only, applied to every split
    y_train = np.concatenate([arrays["train"][u][1][:n] for u, n in (("train_0", 60), ("train_1", 50), ("train_3", 70))])
    mean, std = y_train.astype(np.float64).mean(0), y_train.astype(np.float64).std(0, ddof=1)
    np.testing.assert_allclose(banks["train"].y.numpy(), (y_train - mean) / std, rtol=1e-4, atol=1e-4)
    y_valid = np.concatenate([arrays["valid"]["valid_0"][1][:30], arrays["valid"]["valid_1"][1][:44]])
    np.testing.assert_allclose(banks["valid"].y.numpy(), (y_valid - mean) / std, rtol=1e-4, atol=1e-4)
    assert abs(float(banks["valid"].y.mean())) > 0.05, "valid is not normalised with its own statistics"
    assert stats["normalization"]["y"]["method"] == "standard"
    assert stats["normalization"]["x"] == {"method": "none"}


def test_the_original_csv_column_names_and_absolute_paths(seed_csvs, write_yaml, tmp_path):
    feats = seed_csvs["features"]
    for split, utts in seed_csvs["arrays"].items():
        # source_feature/target_feature columns; absolute paths; no features_dir needed
        write_csv(seed_csvs["csvs"][split], [(u, str(feats / "x" / f"{u}.npy"), str(feats / "y" / f"{u}.npy"))
                                              for u in utts], header=("id", "source_feature", "target_feature"))
    doc = csv_doc(seed_csvs, tmp_path)
    del doc["data"]["features_dir"]
    prep = prepare(write_yaml(tmp_path / "csv.yaml", doc))
    banks, stats, _ = build_banks(prep)
    assert stats["test"]["frames"] == 75 and banks["test"].names == ["test_0", "test_1"]


def test_csv_errors_name_the_file(seed_csvs, write_yaml, tmp_path):
    path = write_yaml(tmp_path / "csv.yaml", csv_doc(seed_csvs, tmp_path))
    write_csv(seed_csvs["csvs"]["valid"], [("v", "x/valid_0.npy", "y/valid_0.npy")], header=("id", "src", "tgt"))
    with pytest.raises(MinecliError, match="needs the columns id,x_feature,y_feature; found id,src,tgt"):
        prepare(path)
    write_csv(seed_csvs["csvs"]["valid"], [("gone", "x/gone.npy", "y/valid_0.npy")])
    with pytest.raises(MinecliError, match="feature file of id gone not found"):
        prepare(path)
    write_csv(seed_csvs["csvs"]["valid"], [("valid_0", "x/valid_0.npy", "y/valid_0.npy")])
    doc = csv_doc(seed_csvs, tmp_path, x={"extractor": "mel", "params": {}})
    with pytest.raises(MinecliError, match="use extractor 'precomputed'"):
        prepare(write_yaml(tmp_path / "csv_mel.yaml", doc))


def test_precomputed_width_and_vocab_errors_name_the_file(seed_csvs, write_yaml, tmp_path):
    feats = seed_csvs["features"]
    wide = feats / "y" / "test_1.npy"
    np.save(wide, np.zeros((40, 4), dtype=np.float32))
    prep = prepare(write_yaml(tmp_path / "csv.yaml", csv_doc(seed_csvs, tmp_path)))
    with pytest.raises(MinecliError, match=r"has shape \(40, 4\), expected \[T, 3\]") as info:
        build_banks(prep)
    assert str(wide) in str(info.value)

    np.save(wide, np.zeros((40, 3), dtype=np.float32))
    bad_ids = feats / "x" / "valid_1.npy"
    np.save(bad_ids, np.array([0, 3, 16, 2]))
    with pytest.raises(MinecliError, match=r"ids in \[0, 16\], outside vocab_size 16") as info:
        build_banks(prepare(write_yaml(tmp_path / "csv.yaml", csv_doc(seed_csvs, tmp_path))))
    assert str(bad_ids) in str(info.value)

    np.save(bad_ids, np.array([0.0, 1.5, 2.0]))
    with pytest.raises(MinecliError, match="non-integer values") as info:
        build_banks(prepare(write_yaml(tmp_path / "csv.yaml", csv_doc(seed_csvs, tmp_path))))
    assert str(bad_ids) in str(info.value)


def test_precomputed_files_found_by_audio_stem_through_the_cache(audio_dataset, run_doc, write_yaml, tmp_path):
    # filelists of audio, features in a folder named by the audio file's stem, stored [dim, T]
    feats = tmp_path / "npy"
    feats.mkdir()
    for split, files in audio_dataset["files"].items():
        for i, f in enumerate(files):
            np.save(feats / f"{f.stem}.npy", np.full((2, 30 + i), float(i), dtype=np.float32))
    doc = run_doc(y={"extractor": "precomputed",
                     "params": {"kind": "float", "dim": 2, "dir": str(feats), "transpose": True, "frame_rate": 100}})
    prep = prepare(write_yaml(tmp_path / "pre.yaml", doc))
    counts = extract_all(prep, sides=("y",), progress=False)
    assert counts["y"]["extracted"] == 9
    from minecli.core.pipeline import load_side

    ys = load_side(prep, "y", "valid")
    assert [tuple(t.shape) for t in ys] == [(30, 2), (31, 2)]
    assert float(ys[1][0, 0]) == 1.0

    # rewritten feature files are read again (the audio did not change), and only those
    stem = audio_dataset["files"]["valid"][1].stem
    np.save(feats / f"{stem}.npy", np.full((2, 31), 7.0, dtype=np.float32))
    prep = prepare(write_yaml(tmp_path / "pre.yaml", doc))
    assert extract_all(prep, sides=("y",), progress=False)["y"]["extracted"] == 1
    assert float(load_side(prep, "y", "valid")[1][0, 0]) == 7.0

    # a file of the wrong width fails with its name
    bad = feats / f"{audio_dataset['files']['test'][0].stem}.npy"
    np.save(bad, np.zeros((5, 30), dtype=np.float32))
    prep = prepare(write_yaml(tmp_path / "pre.yaml", doc))
    with pytest.raises(MinecliError, match=r"has shape \(30, 5\), expected \[T, 2\]") as info:
        extract_all(prep, sides=("y",), progress=False)
    assert str(bad) in str(info.value)


# ----------------------------------------------------------------------------- the whole run
def check_results(doc: dict, out: Path, expect_frames: dict[str, int]) -> None:
    lo, hi = doc["ci95_nats"]
    assert math.isfinite(doc["mi_nats"]) and math.isfinite(lo) and math.isfinite(hi)
    assert lo <= doc["mi_nats"] <= hi
    assert doc["mi_bits"] == pytest.approx(doc["mi_nats"] / LN2)
    assert doc["ci95_bits"] == pytest.approx([lo / LN2, hi / LN2])
    # per second: counted once per sample that shares no source frame with the last (not per aligned frame)
    assert doc["mi_nats_per_second"] == pytest.approx(doc["mi_nats"] * doc["units"]["samples_per_second"])
    assert doc["frames"] == expect_frames
    assert doc["pairs_dropped"] == {"train": 0, "valid": 0, "test": 0}
    assert doc["time_seconds"]["total"] >= doc["time_seconds"]["training"] > 0
    assert {"python", "torch", "numpy"} <= set(doc["versions"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["mi_nats"] == doc["mi_nats"] and on_disk["frames"] == expect_frames
    assert (out / "summary.txt").read_text().startswith("I(X;Y) = ")
    # the critic actually built is named, in the results and in the summary
    assert doc["critic"] and f"  critic: {doc['critic']}\n" in (out / "summary.txt").read_text()
    # the reference critic's validation is recorded, and the critic line says which one won
    ref = doc["reference"]
    if ref is not None:
        assert math.isfinite(ref["valid_nats"])
        # selected: named in full; else the candidate that lost is named beside the critic that won
        assert (ref["critic"] if ref["selected"] else f"the {ref['critic'].split(' (')[0]} validated") in doc["critic"]
        assert (out / "checkpoints" / "reference" / "model.safetensors").exists() == ref["selected"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved == doc["config"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_run_writes_results_with_sane_numbers(run_config_file, audio_dataset, tmp_path):
    path = run_config_file()
    result = run_config(path, ["training.steps=20"])
    doc, out = result.document, result.output_dir
    assert out == tmp_path / "out"
    samples = audio_dataset["samples"]
    expect = {s: sum(aligned_frames(n) for n in samples[s]) for s in ("train", "valid", "test")}
    check_results(doc, out, expect)
    assert doc["aligned_frame_rate_hz"] == 100.0
    assert doc["pairing"]["alignment"]["y_repeat"] == 2
    assert doc["units"]["samples_per_second"] == 50.0  # y's 50 Hz frames are repeated x2, not new
    assert doc["extraction"]["x"]["extracted"] == 9 and doc["extraction"]["y"]["extracted"] == 9
    assert doc["training"]["steps_run"] == 20
    assert doc["reference"]["kind"] == "gaussian"  # mel against complex_spec: two float streams
    # step 0 is the untrained critic, the baseline every later state must beat
    assert [h["step"] for h in doc["history"]] == [0, 10, 20]
    assert doc["streams"]["x"]["spec"]["dim"] == 8 and doc["streams"]["y"]["spec"]["dim"] == 66
    assert doc["entropy"] == {}, "no entropy ceiling for float streams"
    assert result.summary == (out / "summary.txt").read_text().rstrip("\n")
    # the resolved config is the one that ran (overrides included) and runs again as it is
    resolved = out / "config.resolved.yaml"
    assert yaml.safe_load(resolved.read_text())["training"]["steps"] == 20
    cfg, _, _ = load_config(resolved)
    assert cfg.critic.hidden_dims == [16] and cfg.training.lr == pytest.approx(1e-3)

    # a second run finds every feature in the cache
    again = run_config(path, ["training.steps=20", f"output.dir={tmp_path / 'out2'}"])
    assert again.document["extraction"]["x"]["extracted"] == 0
    assert again.document["extraction"]["y"]["cached"] == 9


def test_a_failing_version_probe_is_recorded_and_the_run_finishes(run_config_file, monkeypatch):
    """A library whose probe raises (a broken torchaudio raises OSError) must not lose a finished run."""
    from importlib import metadata

    real = metadata.version

    def probe(dist):
        if dist == "torchaudio":
            raise OSError("Could not load this library: libtorchaudio.so")
        return real(dist)

    monkeypatch.setattr(metadata, "version", probe)
    doc = run_config(run_config_file(), ["training.steps=20"]).document
    assert math.isfinite(doc["mi_nats"])
    assert doc["versions"]["torchaudio"].startswith("unknown (OSError: Could not load")
    assert doc["versions"]["torch"] == real("torch")


def test_run_json_on_the_command_line(seed_csvs, write_yaml, tmp_path):
    path = write_yaml(tmp_path / "csv.yaml", csv_doc(seed_csvs, tmp_path))
    result = invoke("run", str(path), "--json", "training.steps=10")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    check_results_csv = doc["pairs_dropped"]
    assert check_results_csv == {"train": 1, "valid": 0, "test": 0}
    assert doc["frames"] == {"train": 180, "valid": 74, "test": 75}
    lo, hi = doc["ci95_nats"]
    assert math.isfinite(doc["mi_nats"]) and lo <= doc["mi_nats"] <= hi
    # an index stream gets its entropy ceiling
    assert doc["entropy"]["x"]["log_vocab_nats"] == pytest.approx(math.log(16))
    assert 0 < doc["entropy"]["x"]["plugin_entropy_nats"] <= math.log(16) + 1e-9
    assert 0 < doc["p_value_no_dependence"] <= 1
    # The p-value is quotable as text ("< 0.01" at its floor) with how many re-pairings of what.
    floor = 1 / (1 + doc["n_permutations"])
    text = doc["p_value_no_dependence_text"]
    assert text == (f"< {floor:.2g}" if doc["p_value_no_dependence"] <= floor else f"{doc['p_value_no_dependence']:.2g}")
    assert doc["n_permutations"] == doc["config"]["training"]["null_permutations"] and doc["permutation_unit"]
    assert doc["correlation_length_frames"] >= 1
    # The reported interval holds the cheap test-noise one.
    nlo, nhi = doc["ci95_test_noise_nats"]
    assert lo <= nlo <= doc["mi_nats"] <= nhi <= hi and "test_noise" in doc["ci_terms"]
    assert doc["extraction"]["x"]["source"] == "csv"
    on_disk = json.loads((tmp_path / "csv_out" / "results.json").read_text())
    assert on_disk["mi_nats"] == doc["mi_nats"]
    # without --json the one-screen summary
    text = invoke("run", str(path), "training.steps=10", f"output.dir={tmp_path / 'o2'}")
    assert text.exit_code == 0 and text.stdout.startswith("I(X;Y) = ")
    assert "utterances dropped by pairing: 1/0/0" in text.stdout
    assert f"p-value of no dependence: {text_p(tmp_path / 'o2')} ({doc['n_permutations']} re-pairings of " in text.stdout
    assert "95% interval from test noise alone: [" in text.stdout


def text_p(out: Path) -> str:
    """The p-value text a run wrote to results.json."""
    return json.loads((out / "results.json").read_text())["p_value_no_dependence_text"]


def test_run_errors_are_one_clear_line(run_config_file):
    result = invoke("run", str(run_config_file()), "training.steps")
    assert result.exit_code == 1
    assert "is not KEY=VALUE" in result.stderr
    assert "Traceback" not in result.stderr


def test_too_few_usable_utterances_is_explained(seed_csvs, write_yaml, tmp_path):
    doc = csv_doc(seed_csvs, tmp_path)
    doc["data"]["max_length_diff"] = 0
    prep = prepare(write_yaml(tmp_path / "csv.yaml", doc))
    with pytest.raises(MinecliError, match=r"the valid split has 1 usable utterances after pairing \(1 dropped .*max_length_diff=0 frames"):
        build_banks(prep)


# ----------------------------------------------------------------------------- resuming training
def test_an_interrupted_training_resumes_from_its_checkpoint(run_config_file, tmp_path, monkeypatch):
    path = run_config_file(training={"steps": 40, "validate_every": 10}, output={"save_every": 20})
    reference = run_config(path, [f"output.dir={tmp_path / 'ref'}"]).document

    real_validate = trainer_mod.Trainer.validate

    def interrupt_at_30(self):
        if self.step == 30:
            raise KeyboardInterrupt
        return real_validate(self)

    monkeypatch.setattr(trainer_mod.Trainer, "validate", interrupt_at_30)
    with pytest.raises(KeyboardInterrupt):
        run_config(path)
    state = json.loads((tmp_path / "out" / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 20 and [h["step"] for h in state["history"]] == [0, 10, 20]

    monkeypatch.setattr(trainer_mod.Trainer, "validate", real_validate)
    resumed = run_config(path).document
    assert resumed["training"]["steps_run"] == 40
    assert [h["step"] for h in resumed["history"]] == [0, 10, 20, 30, 40]
    assert resumed["history"][:3] == state["history"]
    # resuming is exact: the same numbers as the run that was never interrupted
    for got, want in zip(resumed["history"], reference["history"]):
        assert got["valid_mi"] == pytest.approx(want["valid_mi"], rel=1e-5, abs=1e-6)
    assert resumed["mi_nats"] == pytest.approx(reference["mi_nats"], rel=1e-5, abs=1e-6)

    # a longer run continues from step 40 instead of starting over
    longer = run_config(path, ["training.steps=80"]).document
    assert [h["step"] for h in longer["history"]] == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    assert longer["history"][:5] == resumed["history"]

    # a checkpoint of another model is refused rather than silently reused
    with pytest.raises(MinecliError, match="different model or data config"):
        run_config(path, ["training.steps=90", "critic.hidden_dims=[8]"])
    # ... unless resume is off
    fresh = run_config(path, ["training.steps=10", "critic.hidden_dims=[8]", "output.resume=false"]).document
    assert [h["step"] for h in fresh["history"]] == [0, 10]


def test_the_summary_names_only_the_terms_that_widened_the_interval(run_config_file):
    """Terms inside the test-noise interval, or trained bounds below it, did not move the reported one."""
    from minecli.core.report import summary_text

    doc = dict(run_config(run_config_file(), ["training.steps=20"]).document)
    lo, hi = doc["ci95_test_noise_nats"]
    doc["ci_terms"] = {"test_noise": [lo, hi], "in_sample_nats": hi + 0.5, "in_sample_frames": 100,
                       "other_estimates_nats": [lo - 1.0], "baseline_nats": lo - 0.25}
    line = next(ln for ln in summary_text(doc).splitlines() if "test noise alone" in ln)
    assert f"train frames ({hi + 0.5:.4f})" in line and f"classical baseline ({lo - 0.25:.4f})" in line
    assert "other critic" not in line and "in_sample_frames" not in line
