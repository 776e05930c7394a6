"""Tiny audio datasets and run configs for the pipeline tests; everything lives under tmp_path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

SAMPLE_RATE = 16000
#: utterance lengths in samples: different per file, so frame counts are not all alike
DURATIONS = {"train": (16000, 14400, 17600, 16000, 12800), "valid": (16000, 14400), "test": (16000, 17600)}


def tone(n_samples: int, seed: int) -> np.ndarray:
    """A chirp whose start frequency depends on the seed, plus a little noise."""
    t = np.arange(n_samples) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    f0 = 150.0 + 40.0 * seed
    sig = 0.3 * np.sin(2 * np.pi * (f0 + 300.0 * t) * t) + 0.03 * rng.standard_normal(n_samples)
    return sig.astype(np.float32)


@pytest.fixture
def installed_plugins():
    """Each test starts from the installed plugins and leaves no registry behind."""
    from minecli.core.registry import reset_registry

    reset_registry(None)
    yield
    reset_registry(None)


@pytest.fixture
def register_extractors():
    """Install extractor classes as a plugin for one test; the installed plugins come back after it."""
    import types

    from minecli import hookimpl
    from minecli.core.registry import build_registry, reset_registry

    def _register(name: str, *classes: type) -> None:
        module = types.ModuleType(f"minecli_test_{name}")

        @hookimpl
        def register_extractors(register):
            for cls in classes:
                register(cls)

        module.register_extractors = register_extractors
        reset_registry(build_registry(extra_plugins=[(name, module)]))

    yield _register
    reset_registry(None)


@pytest.fixture
def audio_dataset(tmp_path) -> dict[str, Any]:
    """WAV files for train/valid/test and one filelist per split (relative paths, as users write them)."""
    import soundfile as sf

    root = tmp_path / "audio"
    root.mkdir()
    lists: dict[str, Path] = {}
    files: dict[str, list[Path]] = {}
    seed = 0
    for split, lengths in DURATIONS.items():
        files[split] = []
        for n in lengths:
            path = root / f"{split}{seed:02d}.wav"
            sf.write(str(path), tone(n, seed), SAMPLE_RATE, subtype="FLOAT")
            files[split].append(path)
            seed += 1
        lists[split] = root / f"filelist.{split}"
        lists[split].write_text("".join(f"{p.name}\n" for p in files[split]))
    return {"root": root, "lists": lists, "files": files, "samples": DURATIONS}


def run_doc(dataset: dict[str, Any], tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A small, fast mel vs complex-spectrogram config; `sections` update (not replace) the defaults."""
    doc: dict[str, Any] = {
        "data": {split: str(path) for split, path in dataset["lists"].items()} | {"cache_dir": str(tmp_path / "cache")},
        "x": {"extractor": "mel", "params": {"n_mels": 8, "n_fft": 256}},
        "y": {"extractor": "complex_spec", "params": {"n_fft": 64, "frame_rate": 50}},
        "critic": {"hidden_dims": [16]},
        "estimator": {"n_negatives": 4, "eval_negatives": 8},
        "training": {"steps": 20, "batch_size": 32, "validate_every": 10, "bootstrap": 20, "null_permutations": 0,
                     "progress": False, "threads": 1, "lr": "1e-3", "device": "cpu"},
        "output": {"dir": str(tmp_path / "out"), "save_every": 10},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return doc


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    """Write a config document and return its path."""
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(name="run_doc")
def run_doc_fixture(audio_dataset, tmp_path):
    """``run_doc(**sections)``: the small config document for the generated dataset."""

    def _make(**sections: dict[str, Any]) -> dict[str, Any]:
        return run_doc(audio_dataset, tmp_path, **sections)

    return _make


@pytest.fixture(name="write_yaml")
def write_yaml_fixture():
    """``write_yaml(path, doc)``."""
    return write_yaml


@pytest.fixture
def run_config_file(audio_dataset, tmp_path):
    """Write the small run config (with optional section updates) and return its path."""

    def _make(name: str = "pair.yaml", **sections: dict[str, Any]) -> Path:
        return write_yaml(tmp_path / name, run_doc(audio_dataset, tmp_path, **sections))

    return _make


# ----------------------------------------------------------------------------- synthetic .npy corpora
@pytest.fixture
def npy_corpus(tmp_path):
    """``make(pair, counts)``: per-utterance x and y ``.npy`` files found by stem, with filelists of
    placeholder audio files (the ``precomputed`` extractor never reads audio).

    ``pair(rng, split, index)`` returns the (x, y) arrays of one utterance. Returns the config
    document of a small, fast run over them: ``doc(x_params, y_params, **sections)``.
    """

    def _make(pair, counts=(("train", 8), ("valid", 3), ("test", 3)), name: str = "corpus", seed: int = 0):
        root = tmp_path / name
        for sub in ("audio", "x", "y"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        lists = {}
        for split, count in counts:
            names = []
            for i in range(count):
                uid = f"{split}{i:02d}"
                x, y = pair(rng, split, i)
                np.save(root / "x" / f"{uid}.npy", x)
                np.save(root / "y" / f"{uid}.npy", y)
                (root / "audio" / f"{uid}.wav").write_bytes(b"")
                names.append(f"{uid}.wav")
            lists[split] = root / "audio" / f"filelist.{split}"
            lists[split].write_text("".join(n + "\n" for n in names))

        def doc(x_params: dict[str, Any], y_params: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
            d: dict[str, Any] = {
                "data": {s: str(p) for s, p in lists.items()} | {"cache_dir": str(tmp_path / "cache")},
                "x": {"extractor": "precomputed", "params": {"dir": str(root / "x")} | x_params},
                "y": {"extractor": "precomputed", "params": {"dir": str(root / "y")} | y_params},
                "critic": {"hidden_dims": [32]},
                "estimator": {"n_negatives": 4, "eval_negatives": 16},
                "training": {"steps": 60, "batch_size": 128, "validate_every": 20, "bootstrap": 20,
                             "null_permutations": 0, "progress": False, "threads": 1, "device": "cpu"},
                "output": {"dir": str(tmp_path / "out"), "save_every": None},
            }
            for section, values in sections.items():
                d.setdefault(section, {}).update(values)
            return d

        return {"root": root, "lists": lists, "doc": doc}

    return _make
