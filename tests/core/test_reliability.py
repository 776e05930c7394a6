"""The fault table of docs/reliability.md: one test per row, each injecting its fault.

Every test asserts what the user sees (one line, no traceback), the exit code, and what was kept.
Runs are tiny (20 steps on the conftest's 9 short files), so the file takes a few seconds a test.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from minecli import Extractor, StreamSpec
from minecli.core import resume as resume_mod
from minecli.core import trainer as trainer_mod
from minecli.core.outdir import LOCK_NAME
from minecli.core.pipeline import extract_all, load_side, prepare
from minecli.testing import invoke_cli as invoke

SAMPLE_RATE = 16000  # the rate of the conftest's audio_dataset


def tone(n_samples: int, seed: int) -> np.ndarray:
    """A short chirp like the conftest's files."""
    t = np.arange(n_samples) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * (150.0 + 40.0 * seed + 300.0 * t) * t)).astype(np.float32)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


pytestmark = pytest.mark.usefixtures("installed_plugins")


def one_line_error(result, pattern: str) -> str:
    """Assert a failed run printed exactly one line matching `pattern` and exited 1; return the line."""
    err = result.stderr.strip()
    assert result.exit_code == 1, (result.exit_code, result.stdout, err)
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("Error: "), err
    import re

    assert re.search(pattern, err), (pattern, err)
    return err


def run(path: Path, *overrides: str):
    """``minecli run CONFIG OVERRIDES`` in-process."""
    return invoke("run", str(path), *overrides)


# ----------------------------------------------------------------------------- precomputed features
def _features(tmp_path: Path) -> dict[str, Path]:
    """Independent x and y .npy files per utterance, and filelists naming x's files (as users write them)."""
    rng = np.random.default_rng(0)
    feats = tmp_path / "feats"
    for side in ("x", "y"):
        (feats / side).mkdir(parents=True)
    lists = {}
    for split, n in (("train", 5), ("valid", 3), ("test", 3)):
        names = [f"{split}{i:02d}" for i in range(n)]
        for name in names:
            for side in ("x", "y"):
                np.save(feats / side / f"{name}.npy", rng.standard_normal((40, 3)).astype(np.float32))
        lists[split] = tmp_path / f"{split}.list"
        lists[split].write_text("".join(f"feats/x/{name}.npy\n" for name in names))
    return {"feats": feats, **lists}


def _features_doc(tmp_path: Path, data: dict[str, Path], dirs: bool = True) -> dict:
    def side(name: str) -> dict:
        params = {"kind": "float", "dim": 3, "frame_rate": 100.0}
        if dirs:
            params["dir"] = str(data["feats"] / name)
        return {"extractor": "precomputed", "params": params}

    return {
        "data": {s: str(data[s]) for s in ("train", "valid", "test")} | {"cache_dir": str(tmp_path / "cache")},
        "x": side("x"), "y": side("y"),
        "critic": {"hidden_dims": [16]}, "estimator": {"n_negatives": 4, "eval_negatives": 8},
        "training": {"steps": 20, "batch_size": 32, "validate_every": 10, "bootstrap": 20, "null_permutations": 0,
                     "progress": False, "device": "cpu"},
        "output": {"dir": str(tmp_path / "out"), "save_every": 10},
    }


def test_precomputed_dir_is_used_for_npy_filelists(tmp_path, write_yaml):
    data = _features(tmp_path)
    prep = prepare(write_yaml(tmp_path / "p.yaml", _features_doc(tmp_path, data)))
    extract_all(prep, progress=False)
    got = load_side(prep, "y", "test")
    for i, t in enumerate(got):
        # y reads feats/y/<stem>.npy although the filelist names feats/x/<stem>.npy
        assert torch.equal(t, torch.from_numpy(np.load(data["feats"] / "y" / f"test{i:02d}.npy")))


def test_x_and_y_reading_the_same_file_is_an_error(tmp_path, write_yaml):
    data = _features(tmp_path)
    result = run(write_yaml(tmp_path / "p.yaml", _features_doc(tmp_path, data, dirs=False)))
    one_line_error(result, r"x and y both read .*feats/x/train00\.npy .*Set params\.dir of each precomputed side")
    assert not (tmp_path / "out").exists(), "nothing is written for a config that cannot be right"


def test_same_stem_in_two_folders_is_an_error_naming_both(tmp_path, write_yaml):
    data = _features(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "train00.npy", np.zeros((40, 3), np.float32))
    with open(data["test"], "a") as fh:
        fh.write("other/train00.npy\n")
    result = run(write_yaml(tmp_path / "p.yaml", _features_doc(tmp_path, data)))
    one_line_error(result, r"x: \S+feats/x/train00\.npy and \S+other/train00\.npy both read \S+feats/x/train00\.npy "
                           r".*give the audio files distinct names")


def test_same_textgrid_stem_in_two_folders_is_an_error(run_config_file, audio_dataset, tmp_path):
    from minecli.plugins.phones import write_textgrid

    for sub in ("a", "b"):
        (tmp_path / "tg" / sub).mkdir(parents=True)
        write_textgrid(tmp_path / "tg" / sub / "train00.TextGrid", {"phones": [(0.0, 1.0, "AH1")]}, xmax=1.0)
    path = run_config_file(x={"extractor": "phones", "params": {"source": "textgrid",
                                                                "textgrid_dir": str(tmp_path / "tg")}})
    one_line_error(run(path), r"more than one train00 TextGrid \(\S+/a/train00\.TextGrid and \S+/b/train00\.TextGrid\)")


def test_a_file_in_two_splits_is_an_error(run_config_file, audio_dataset):
    lists = audio_dataset["lists"]
    with open(lists["test"], "a") as fh:
        fh.write("train00.wav\n")
    one_line_error(run(run_config_file()), r"train00\.wav is listed in both the train and the test filelist")


def test_nan_in_a_precomputed_file_names_the_npy(tmp_path, write_yaml):
    data = _features(tmp_path)
    bad = data["feats"] / "y" / "valid01.npy"
    arr = np.load(bad)
    arr[7, 1] = np.nan
    np.save(bad, arr)
    result = run(write_yaml(tmp_path / "p.yaml", _features_doc(tmp_path, data)))
    one_line_error(result, rf"{bad} holds NaN or infinite values \(first at frame 7\)")


# ----------------------------------------------------------------------------- config values
@pytest.mark.parametrize("override, message", [
    ("training.steps=0", r"training\.steps must be at least 1, not 0"),
    ("training.steps=-5", r"training\.steps must be at least 1, not -5"),
    ("data.max_files=-1", r"data\.max_files must be a positive number of files \(or null for all\), not -1"),
])
def test_values_that_would_run_nothing_are_config_errors(run_config_file, tmp_path, override, message):
    one_line_error(run(run_config_file(), override), message)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- suspicious results
def test_silence_in_the_test_split_does_not_pass_an_overfit_negative(run_config_file, audio_dataset, tmp_path):
    # The tiny chirp corpus teaches the critic nothing that carries over between files: its best state
    # validated 0.001 nats on the 2 validation files, and with 3 s of silence in each test file that
    # state tested at about -0.06. Not significantly above the untrained critic, it no longer gives the
    # estimate: the untrained one scores ~0, and the critic line and a warning say why. (A critic that
    # did validate well and then collapses on test is flagged: test_trainer and the cases below.)
    for path in audio_dataset["files"]["test"]:
        wave, _ = sf.read(str(path), dtype="float32")
        sf.write(str(path), np.concatenate([wave, np.zeros(3 * SAMPLE_RATE, np.float32)]), SAMPLE_RATE,
                 subtype="FLOAT")
    result = run(run_config_file())
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["mi_nats"] > -0.05
    assert doc["critic"].startswith("untrained ") and "not significantly above it" in doc["critic"]
    assert any("no trained state validated significantly above the untrained critic" in w for w in doc["warnings"])


@pytest.mark.parametrize("mi, ci, valid, expect", [
    # independent streams: noise around 0 is never flagged (the gap is under the 0.05-nat floor)
    (-0.02, (-0.06, 0.01), 0.004, None),
    # an ordinary selection effect: 0.25 below a 1.8 validation is under 20% of it
    (1.55, (1.50, 1.60), 1.80, None),
    # the silence case of the report: 1.807 on validation, -0.579 on test
    (-0.579, (-0.70, -0.45), 1.807, "far below the validation value 1.8070"),
    # every test frame scored alike (constant frames): a zero-width interval
    (0.0, (0.0, 0.0), 0.9, "far below the validation value 0.9000"),
    # validation itself near 0, but the whole test interval below 0
    (-0.3, (-0.4, -0.2), -0.25, "the whole test-noise 95% interval [-0.4000, -0.2000] is below 0"),
])
def test_suspicion_thresholds(mi, ci, valid, expect):
    from minecli.core.verdict import result_suspicions

    found = result_suspicions(mi, ci, "utterances", valid, [{"step": 0, "valid_mi": 0.0}])
    if expect is None:
        assert found == []
    else:
        assert len(found) == 1 and expect in found[0]


def test_a_diverged_validation_is_flagged(run_config_file, tmp_path, monkeypatch):
    real = trainer_mod.Trainer.validate

    def blow_up_at_10(self):
        return -1.4e8 if self.step == 10 else real(self)

    monkeypatch.setattr(trainer_mod.Trainer, "validate", blow_up_at_10)
    result = run(run_config_file())
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert any(w.startswith("training diverged: validation reached -1.4e+08 nats at step 10") for w in doc["warnings"])
    assert doc["training"]["best_step"] != 10


def test_a_non_finite_estimate_exits_1_with_strict_json(run_config_file, tmp_path, monkeypatch):
    real = trainer_mod.Trainer.estimate

    def nan_estimate(self, *a, **k):
        out = real(self, *a, **k)
        return {**out, "mi_nats": float("nan"), "ci95_nats": (float("nan"), float("inf"))}

    monkeypatch.setattr(trainer_mod.Trainer, "estimate", nan_estimate)
    one_line_error(run(run_config_file()), r"the estimate is not finite \(nan\); \S+results\.json records it as null")
    text = (tmp_path / "out" / "results.json").read_text()

    def reject(token):
        raise ValueError(f"bare {token} in results.json")

    doc = json.loads(text, parse_constant=reject)  # strict JSON: no NaN / Infinity tokens
    assert doc["mi_nats"] is None and doc["ci95_nats"] == [None, None]
    assert any("non-finite values (NaN or infinite) are written as null: mi_nats" in w for w in doc["warnings"])
    assert (tmp_path / "out" / "checkpoints" / "last" / "state.json").exists(), "training is kept"


# ----------------------------------------------------------------------------- checkpoints
def _damage_trainer_file(last: Path) -> None:
    data = (last / "trainer.safetensors").read_bytes()
    (last / "trainer.safetensors").write_bytes(data[: len(data) // 2])


def _damage_state(last: Path) -> None:
    (last / "state.json").write_text('{"step": 20, "best_value": ')


def _nan_weights(last: Path) -> None:
    """A well-formed file holding NaN, in a checkpoint without digests (as older minecli wrote them)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(last / "trainer.safetensors"))
    key = next(k for k in tensors if k.startswith("best."))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(last / "trainer.safetensors"))
    state = json.loads((last / "state.json").read_text())
    del state["sha256"]
    (last / "state.json").write_text(json.dumps(state))


def _flip_a_weight_byte(last: Path) -> None:
    """A damaged byte inside the tensor data: the file still parses, only its digest shows it."""
    data = bytearray((last / "model.safetensors").read_bytes())
    data[-3] ^= 0x40
    (last / "model.safetensors").write_bytes(bytes(data))


@pytest.mark.parametrize("damage, named, reason", [
    (_damage_trainer_file, "trainer.safetensors", "is damaged"),
    (_damage_state, "state.json", r"is damaged \(JSONDecodeError"),
    (_nan_weights, "trainer.safetensors", "holds NaN or infinite values in best."),
    (_flip_a_weight_byte, "model.safetensors", r"is damaged \(its contents do not match the digest in "),
])
def test_a_damaged_checkpoint_is_named_and_never_resumed(run_config_file, tmp_path, damage, named, reason):
    path = run_config_file()
    assert run(path).exit_code == 0
    out = tmp_path / "out"
    first = (out / "results.json").read_text()
    damage(out / "checkpoints" / "last")
    err = one_line_error(run(path, "training.steps=40"),
                         rf"checkpoint file \S+/checkpoints/last/{named} {reason}.*Delete \S+/checkpoints to start "
                         "training afresh, or run with output.resume=false")
    assert "nan" not in err.lower() or "NaN or infinite" in err
    assert (out / "results.json").read_text() == first, "the earlier results are kept"
    # The fix the message names works.
    again = run(path, "training.steps=40", "output.resume=false")
    assert again.exit_code == 0 and math.isfinite(json.loads((out / "results.json").read_text())["mi_nats"])


def test_a_damaged_last_falls_back_to_a_whole_last_old(run_config_file, tmp_path):
    import shutil

    path = run_config_file()
    assert run(path).exit_code == 0
    ckpt = tmp_path / "out" / "checkpoints"
    shutil.copytree(ckpt / "last", ckpt / "last.old")  # as an interrupted swap leaves it
    _damage_trainer_file(ckpt / "last")
    result = run(path, "training.steps=40")
    assert result.exit_code == 0, result.stderr
    assert "resuming from" in result.stderr and "last.old at step 20" in result.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["training"]["steps_run"] == 40


# ----------------------------------------------------------------------------- the output folder
def test_a_second_run_into_a_busy_folder_stops_at_once(run_config_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"mi_nats": 1.0}')
    with open(out / LOCK_NAME, "w") as held:  # the first run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        one_line_error(run(run_config_file()), rf"output folder {out} is in use by another minecli run .*set "
                                                r"output\.dir to another folder")
    assert (out / "results.json").read_text() == '{"mi_nats": 1.0}', "the first run's results are untouched"
    assert not (out / "checkpoints").exists()
    assert run(run_config_file()).exit_code == 0, "the lock is released with the process that held it"


def test_output_folder_that_is_a_file_or_under_a_file(run_config_file, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    path = run_config_file()
    one_line_error(run(path, f"output.dir={blocker}"), rf"output folder {blocker} is a file, not a folder")
    one_line_error(run(path, f"output.dir={blocker / 'run'}"),
                   rf"cannot create the output folder {blocker / 'run'}: a part of the path is a file")
    assert blocker.read_text() == "not a folder"


def _failing(monkeypatch, module, name: str, under: Path, code: int) -> None:
    """Make module.name raise OSError(code) for paths under `under` (root ignores permission bits)."""
    real = getattr(module, name)

    def fake(path, *a, **k):
        if str(path).startswith(str(under)):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(module, name, fake)


def test_read_only_or_uncreatable_output_folder(run_config_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    _failing(monkeypatch, os, "open", out, errno.EROFS)
    one_line_error(run(run_config_file()), rf"cannot write in the output folder {out}: the file system is read-only; "
                                           r"set output\.dir to a folder you can write")
    monkeypatch.undo()
    _failing(monkeypatch, os, "mkdir", tmp_path / "new", errno.EACCES)
    one_line_error(run(run_config_file(), f"output.dir={tmp_path / 'new' / 'run'}"),
                   r"cannot create the output folder \S+/new/run: permission denied")


def test_read_only_cache(run_config_file, tmp_path, monkeypatch):
    _failing(monkeypatch, os, "mkdir", tmp_path / "cache", errno.EROFS)
    one_line_error(run(run_config_file()), r"cannot write \S+/cache/\S+: the file system is read-only; make that "
                                           r"folder writable or choose another one \(data\.cache_dir")


def test_disk_full_while_saving_a_checkpoint(run_config_file, tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(resume_mod, "save_file", full)
    one_line_error(run(run_config_file()), r"cannot write \S+/checkpoints/best: no space left on the device; free "
                                           r"some space and run again")
    ckpt = tmp_path / "out" / "checkpoints"
    assert [p.name for p in ckpt.iterdir()] == [], "no empty or half-written staging folder is left"
    assert list((tmp_path / "cache").rglob("shard-*.safetensors")), "the extracted features are kept"


def test_a_save_killed_midway_leaves_nothing_on_the_next_run(run_config_file, tmp_path):
    path = run_config_file()
    assert run(path).exit_code == 0
    ckpt = tmp_path / "out" / "checkpoints"
    stale = ckpt / ".last.k9x2abcd"  # what kill -9 during a save leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    result = run(path, "training.steps=40")
    assert result.exit_code == 0, result.stderr
    assert "at step 20" in result.stderr, "it resumed from the whole checkpoint"
    assert sorted(p.name for p in ckpt.iterdir()) == ["best", "last"]


def test_disk_full_while_writing_results(run_config_file, tmp_path, monkeypatch):
    from minecli.core import io as io_mod

    real = io_mod.write_text

    def full(path, text):
        if Path(path).name == "results.json":
            raise io_mod.write_error(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(path, text)

    # atomic_write turns the OSError into this error; the injection checks the CLI shows it as one line
    monkeypatch.setattr(io_mod, "write_text", full)
    one_line_error(run(run_config_file()), r"cannot write \S+/out/results\.json: no space left on the device")
    assert (tmp_path / "out" / "checkpoints" / "last" / "state.json").exists(), "training is kept"
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]


def test_atomic_write_turns_enospc_into_one_line(tmp_path):
    from minecli import MinecliError
    from minecli.core.io import atomic_write

    def writer(tmp):
        Path(tmp).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(MinecliError, match=rf"cannot write {tmp_path / 'r.json'}: no space left on the device"):
        atomic_write(tmp_path / "r.json", writer)
    assert list(tmp_path.iterdir()) == [], "the temporary file is removed"


def test_checkpoints_follow_the_umask_which_is_never_changed(run_config_file, tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        def no_umask_changes(mask):
            raise AssertionError("the process umask was changed during a run")

        monkeypatch.setattr(os, "umask", no_umask_changes)
        assert run(run_config_file()).exit_code == 0
    finally:
        monkeypatch.undo()
        os.umask(old)
    out = tmp_path / "out"
    files = [out / "results.json", *(out / "checkpoints").rglob("*")]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    for p in files:
        want = 0o750 if p.is_dir() else 0o640
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(stat.S_IMODE(p.stat().st_mode)))
    assert modes["model.safetensors"] == 0o640


# ----------------------------------------------------------------------------- plugins and inputs
class _Exiting(Extractor):
    """An extractor that ends the process, as a careless plugin might."""

    name = "exiting"
    summary = "calls sys.exit (test plugin)"
    where = "call"

    def spec(self) -> StreamSpec:
        return StreamSpec("float", 100.0, dim=1, sample_rate=16000)

    def fit(self, train_paths, cache_dir):
        if type(self).where == "fit":
            sys.exit(3)

    def __call__(self, wave, sample_rate, path=None):
        sys.exit(3)


@pytest.fixture
def exiting_plugin(register_extractors):
    register_extractors("exiting", _Exiting)
    yield _Exiting
    _Exiting.where = "call"


@pytest.mark.parametrize("where, message", [
    ("call", r"extractor 'exiting' called sys\.exit\(3\) on \S+train00\.wav; report this to the plugin's authors"),
    ("fit", r"plugin 'exiting' \(extractor 'exiting'\) at \S+test_reliability\.py:\d+ called sys\.exit\(3\); "
            r"minecli stopped"),
])
def test_a_plugin_calling_sys_exit_is_named(exiting_plugin, run_config_file, where, message):
    exiting_plugin.where = where
    one_line_error(run(run_config_file(x={"extractor": "exiting", "params": {}})), message)


def test_phone_audio_shorter_than_one_frame(run_config_file, audio_dataset):
    sf.write(str(audio_dataset["files"]["train"][0]), tone(40, 0), SAMPLE_RATE, subtype="FLOAT")
    path = run_config_file(x={"extractor": "phones", "params": {"source": "pocketsphinx"}})
    result = invoke("extract", str(path), "--side", "x")
    one_line_error(result, r"train00\.wav lasts 2\.5 ms, shorter than one 10 ms phone frame; remove it from the "
                           "filelist")


def _corrupt(path: Path) -> None:
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)


def test_an_unreadable_file_stops_the_run_by_default(run_config_file, audio_dataset, tmp_path):
    bad = audio_dataset["files"]["test"][1]
    _corrupt(bad)
    one_line_error(run(run_config_file()), rf"cannot read audio file {bad}")
    assert list((tmp_path / "cache").rglob("shard-*.safetensors")), "files read before it stay cached"


def test_on_error_skip_leaves_unreadable_files_out_and_lists_them(run_config_file, audio_dataset, tmp_path):
    bad = audio_dataset["files"]["train"][1]
    _corrupt(bad)
    result = run(run_config_file(), "data.on_error=skip")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    doc = json.loads((out / "results.json").read_text())
    assert doc["skipped"] == [str(bad)]
    assert "1 unreadable skipped" in invoke("extract", str(run_config_file()), "data.on_error=skip").stdout
    assert (out / "skipped.txt").read_text() == f"{bad}\n"
    assert doc["pairing"]["train"]["utterances"] == 4
    assert any("1 unreadable audio files were skipped" in w for w in doc["warnings"])
    # A later clean run in the same folder removes the stale list.
    sf.write(str(bad), tone(14400, 1), SAMPLE_RATE, subtype="FLOAT")
    assert run(run_config_file(), "data.on_error=skip").exit_code == 0
    assert not (out / "skipped.txt").exists()


def test_stereo_and_other_rates_are_counted_in_the_summary(run_config_file, audio_dataset, tmp_path):
    first, second = audio_dataset["files"]["train"][:2]
    wave = tone(16000, 0)
    sf.write(str(first), np.stack([wave, wave]).T, SAMPLE_RATE, subtype="FLOAT")
    sf.write(str(second), tone(22050, 1), 22050, subtype="FLOAT")
    result = run(run_config_file())
    assert result.exit_code == 0, result.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "note: x: 1 of 9 files have more than one channel and are averaged to mono; 1 of 9 files are " \
           "resampled to 16000 Hz (1 at 22050 Hz)" in summary
    assert summary.count("1 of 9 files have more than one channel") == 2  # once per stream, both read audio


def test_every_row_of_the_fault_table_names_its_test():
    import re

    tests_dir = Path(__file__).resolve().parents[1]
    defined = {m for f in tests_dir.rglob("test_*.py") for m in re.findall(r"^def (test_\w+)", f.read_text(), re.M)}
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) >= 25
    for row in rows:
        refs = [r.split("[")[0] for r in row.split("`")[1::2] if r.startswith("test_")]
        assert refs, row
        for ref in refs:
            assert ref in defined, f"docs/reliability.md names {ref}, which no test defines"
