"""Fixtures for the plugin's tests: a registry that holds the plugin, and tiny generated audio."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import minecli_kmeans
from minecli.core.registry import build_registry, reset_registry

SAMPLE_RATE = 16000


@pytest.fixture
def registry():
    """The process-wide registry with this plugin: found by its entry point when the package is installed,
    otherwise registered by hand for the duration of one test."""
    reg = build_registry()
    if "kmeans" not in reg.names("extractor"):
        reg = build_registry(extra_plugins=[("kmeans", minecli_kmeans)])
    reset_registry(reg)
    yield reg
    reset_registry(None)


def tone(seconds: float, seed: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A chirp whose pitch depends on the seed, plus a little noise: float32 [samples]."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 150.0 + 60.0 * seed
    sig = 0.3 * np.sin(2 * np.pi * (f0 + 300.0 * t) * t)
    sig += 0.02 * np.random.default_rng(seed).standard_normal(t.shape)
    return sig.astype(np.float32)


@pytest.fixture
def audio_files(tmp_path):
    """``make(n, prefix)``: write n short WAV files and return their paths."""
    import soundfile as sf

    counter = [0]

    def make(n: int, prefix: str = "utt", seconds: float = 0.8) -> list[str]:
        paths = []
        for _ in range(n):
            path = tmp_path / f"{prefix}{counter[0]:02d}.wav"
            sf.write(str(path), tone(seconds, counter[0]), SAMPLE_RATE, subtype="FLOAT")
            paths.append(str(path))
            counter[0] += 1
        return paths

    return make


@pytest.fixture
def filelists(tmp_path, audio_files) -> dict[str, Path]:
    """train / valid / test filelists of generated audio."""
    lists = {}
    for split, n in (("train", 5), ("valid", 2), ("test", 2)):
        paths = audio_files(n, split)
        lists[split] = tmp_path / f"filelist.{split}"
        lists[split].write_text("".join(f"{p}\n" for p in paths))
    return lists
