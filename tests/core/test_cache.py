"""The feature cache: extract once, reuse, resume after an interruption, never leave a partial file."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from minecli import Extractor, MinecliError, StreamSpec, param
from minecli.core import cache as cache_mod
from minecli.core.audio import load_for
from minecli.core.cache import FeatureStore, file_key


@dataclass(frozen=True)
class CountingParams:
    hop: int = param(160, help="samples per frame")


class CountingExtractor(Extractor):
    """Frame energy ``[T, 2]`` of the wave; records every path it is called on.

    ``fail_on`` / ``interrupt_on``: raise on the Nth call (1-based); class switches, so the cache
    folder (which depends on the params only) is the same with and without them.
    """

    name = "counting"
    Params = CountingParams
    calls: list[str] = []
    fail_on: int | None = None
    interrupt_on: int | None = None

    def spec(self) -> StreamSpec:
        return StreamSpec("float", 16000 / self.params.hop, dim=2, sample_rate=16000)

    def __call__(self, wave, sample_rate, path=None):
        type(self).calls.append(path)
        n = len(type(self).calls)
        if type(self).fail_on == n:
            raise RuntimeError("model exploded")
        if type(self).interrupt_on == n:
            raise KeyboardInterrupt
        frames = wave[0, : wave.shape[1] // self.params.hop * self.params.hop].reshape(-1, self.params.hop)
        return torch.stack([frames.pow(2).mean(1), frames.abs().max(1).values], dim=1)


@pytest.fixture(autouse=True)
def fresh_calls():
    CountingExtractor.calls = []
    CountingExtractor.fail_on = CountingExtractor.interrupt_on = None
    yield
    CountingExtractor.calls = []
    CountingExtractor.fail_on = CountingExtractor.interrupt_on = None


def all_files(dataset) -> list[str]:
    return [str(p) for split in ("train", "valid", "test") for p in dataset["files"][split]]


def extract(store: FeatureStore, paths: list[str], **kw) -> int:
    loader = lambda p: load_for(p, 16000, 1)  # noqa: E731
    return store.extract(paths, [file_key(p) for p in paths], loader, desc="test", progress=False, **kw)


def shards(store: FeatureStore) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in sorted(store.dir.glob("shard-*.safetensors"))}


def stray_files(store: FeatureStore) -> list[str]:
    """Anything in the store folder that is neither a complete shard nor the metadata file."""
    return sorted(p.name for p in store.dir.iterdir()
                  if not (p.name.startswith("shard-") and p.suffix == ".safetensors") and p.name != "extractor.json")


# ----------------------------------------------------------------------------- keys
def test_file_key_follows_path_size_and_mtime(tmp_path):
    a = tmp_path / "a.wav"
    a.write_bytes(b"1234")
    key = file_key(a)
    assert key == file_key(str(a)) == file_key(tmp_path / "." / "a.wav")
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    assert file_key(a) != key
    b = tmp_path / "b.wav"
    b.write_bytes(b"1234")
    assert file_key(b) != file_key(a)
    with pytest.raises(MinecliError, match="file not found"):
        file_key(tmp_path / "missing.wav")


# ----------------------------------------------------------------------------- reuse
def test_features_are_extracted_once_and_reused(tmp_path, audio_dataset):
    paths = all_files(audio_dataset)
    store = FeatureStore(tmp_path / "cache", CountingExtractor())
    assert extract(store, paths) == len(paths)
    assert sorted(CountingExtractor.calls) == sorted(paths)
    before = shards(store)
    assert before and not stray_files(store)

    # another run (a new store object, reading the shards from disk) extracts nothing
    again = FeatureStore(tmp_path / "cache", CountingExtractor())
    assert again.dir == store.dir
    assert extract(again, paths) == 0
    assert len(CountingExtractor.calls) == len(paths)
    assert shards(again) == before, "no shard was rewritten"

    # and loads exactly what the extractor produced
    loaded = again.load([file_key(p) for p in paths])
    for path, tensor in zip(paths, loaded):
        wave = torch.from_numpy(load_for(path, 16000, 1))
        expect = CountingExtractor()(wave, 16000, path)
        torch.testing.assert_close(tensor, expect)


def test_other_params_and_changed_files_are_extracted_again(tmp_path, audio_dataset):
    paths = all_files(audio_dataset)[:3]
    store = FeatureStore(tmp_path / "cache", CountingExtractor())
    extract(store, paths)
    other = FeatureStore(tmp_path / "cache", CountingExtractor(CountingExtractor.parse({"hop": 320})))
    assert other.dir != store.dir
    assert extract(other, paths) == 3
    assert other.load([file_key(paths[0])])[0].shape[0] == store.load([file_key(paths[0])])[0].shape[0] // 2

    # a file rewritten after extraction gets a new key, so it is extracted again
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    fresh = FeatureStore(tmp_path / "cache", CountingExtractor())
    CountingExtractor.calls = []
    assert extract(fresh, paths) == 1
    assert CountingExtractor.calls == [paths[1]]


def test_the_cache_records_what_made_it(tmp_path, audio_dataset):
    import json

    store = FeatureStore(tmp_path / "cache", CountingExtractor(CountingExtractor.parse({"hop": 320})))
    extract(store, all_files(audio_dataset)[:1])
    meta = json.loads((store.dir / "extractor.json").read_text())
    assert meta["name"] == "counting" and meta["params"]["hop"] == 320
    assert meta["spec"]["frame_rate"] == 50.0


# ----------------------------------------------------------------------------- interruptions
@pytest.mark.parametrize("how", ["fail_on", "interrupt_on"])
def test_an_interrupted_extraction_keeps_finished_files_and_resumes(tmp_path, audio_dataset, how):
    paths = all_files(audio_dataset)
    n_before = 4
    setattr(CountingExtractor, how, n_before + 1)
    store = FeatureStore(tmp_path / "cache", CountingExtractor())
    expected = MinecliError if how == "fail_on" else KeyboardInterrupt
    with pytest.raises(expected) as info:
        extract(store, paths)
    if how == "fail_on":
        # the error names the extractor and the file it failed on
        assert "'counting'" in str(info.value) and paths[n_before] in str(info.value)
        assert "model exploded" in str(info.value)
    assert not stray_files(store), "no temporary file is left behind"

    # the files done before the failure are on disk (read back by a new store)
    setattr(CountingExtractor, how, None)
    healthy = CountingExtractor()
    resumed = FeatureStore(tmp_path / "cache", healthy)
    keys = [file_key(p) for p in paths]
    assert resumed.missing(keys) == list(range(n_before, len(paths)))

    CountingExtractor.calls = []
    assert extract(resumed, paths) == len(paths) - n_before
    assert CountingExtractor.calls == paths[n_before:]
    assert FeatureStore(tmp_path / "cache", healthy).missing(keys) == []


def test_shards_are_flushed_while_extracting(tmp_path, audio_dataset):
    paths = all_files(audio_dataset)
    CountingExtractor.fail_on = 6
    store = FeatureStore(tmp_path / "cache", CountingExtractor())
    with pytest.raises(MinecliError):
        extract(store, paths, flush_every=2)
    files = shards(store)
    # two full shards of two files, then the fifth file written when the error unwound
    sizes = []
    for shard in files:
        with safe_open(str(shard), framework="pt") as fh:
            sizes.append(len(list(fh.keys())))
    assert sorted(sizes) == [1, 2, 2]


def test_a_failed_write_leaves_no_partial_shard(tmp_path, audio_dataset, monkeypatch):
    paths = all_files(audio_dataset)[:3]
    real_save = cache_mod.save_file

    def half_then_fail(tensors, filename, *args, **kwargs):
        real_save(tensors, filename, *args, **kwargs)
        with open(filename, "r+b") as fh:  # a crash in the middle of writing
            fh.truncate(os.path.getsize(filename) // 2)
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod, "save_file", half_then_fail)
    store = FeatureStore(tmp_path / "cache", CountingExtractor())
    # one line naming the shard it could not write, never an OSError traceback
    with pytest.raises(MinecliError, match=r"cannot write .*shard-.*\.safetensors: disk full"):
        extract(store, paths)
    assert list(store.dir.glob("shard-*")) == []
    assert stray_files(store) == []

    monkeypatch.setattr(cache_mod, "save_file", real_save)
    fresh = FeatureStore(tmp_path / "cache", CountingExtractor())
    assert extract(fresh, paths) == 3
    assert len(fresh.load([file_key(p) for p in paths])) == 3


def test_a_damaged_shard_is_ignored_and_reextracted(tmp_path, audio_dataset, capsys):
    paths = all_files(audio_dataset)[:2]
    store = FeatureStore(tmp_path / "cache", CountingExtractor())
    extract(store, paths)
    (shard,) = shards(store)
    shard.write_bytes(shard.read_bytes()[:40])
    fresh = FeatureStore(tmp_path / "cache", CountingExtractor())
    assert fresh.missing([file_key(p) for p in paths]) == [0, 1]
    assert "ignoring unreadable cache shard" in capsys.readouterr().err
    assert extract(fresh, paths) == 2


def test_loading_an_entry_that_is_not_cached_says_what_to_do(tmp_path, audio_dataset):
    store = FeatureStore(tmp_path / "cache", CountingExtractor())
    with pytest.raises(MinecliError, match="minecli extract"):
        store.load([file_key(all_files(audio_dataset)[0])])


# ----------------------------------------------------------------------------- output checks
class BadOutput(CountingExtractor):
    name = "bad_output"
    result: object = None

    def __call__(self, wave, sample_rate, path=None):
        return type(self).result


@pytest.mark.parametrize("result, kind, match", [
    (torch.zeros(5, 3), "float", r"returned shape \(5, 3\)"),
    (torch.full((5, 2), float("nan")), "float", "NaN or infinite"),
    (torch.tensor([[0], [7]]), "index", r"outside \[0, 4\)"),
    (torch.zeros(5, 1), "index", "must be integer"),
])
def test_bad_extractor_output_names_the_file(tmp_path, audio_dataset, monkeypatch, result, kind, match):
    monkeypatch.setattr(BadOutput, "result", result)
    if kind == "index":
        monkeypatch.setattr(BadOutput, "spec", lambda self: StreamSpec("index", 100.0, vocab_size=4, sample_rate=16000))
    path = all_files(audio_dataset)[0]
    store = FeatureStore(tmp_path / "cache", BadOutput())
    with pytest.raises(MinecliError, match=match) as info:
        extract(store, [path])
    assert path in str(info.value)
    assert not store.dir.exists() or not list(store.dir.glob("shard-*"))


def test_index_output_is_stored_as_int64(tmp_path, audio_dataset, monkeypatch):
    monkeypatch.setattr(BadOutput, "result", np.array([1, 2, 3], dtype=np.int16))
    monkeypatch.setattr(BadOutput, "spec", lambda self: StreamSpec("index", 100.0, vocab_size=4, sample_rate=16000))
    path = all_files(audio_dataset)[0]
    store = FeatureStore(tmp_path / "cache", BadOutput())
    extract(store, [path])
    (t,) = store.load([file_key(path)])
    assert t.dtype == torch.int64 and t.shape == (3, 1) and t[:, 0].tolist() == [1, 2, 3]


def test_atomic_files_get_umask_permissions_not_owner_only(tmp_path):
    import os
    import stat

    from minecli.core.io import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    # Shared caches and results must be readable by the group and others, like any file the user makes.
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
