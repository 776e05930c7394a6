"""Shared fixtures: one torch thread (faster for small models on 2 cores), offline hubs, tiny audio."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


@pytest.fixture
def write_wav(tmp_path):
    """Write a float waveform ``[samples]`` or ``[channels, samples]`` as a WAV file and return its path."""
    import soundfile as sf

    def _write(wave: np.ndarray, rate: int, name: str = "a.wav") -> str:
        path = tmp_path / name
        data = np.asarray(wave, dtype=np.float32)
        sf.write(str(path), data.T if data.ndim == 2 else data, rate, subtype="FLOAT")
        return str(path)

    return _write


@pytest.fixture
def chirp():
    """A deterministic test signal: a chirp plus a little noise, ``[samples]`` float32."""

    def _make(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
        t = np.arange(int(seconds * rate)) / rate
        sig = 0.4 * np.sin(2 * np.pi * (200 + 600 * t) * t)
        sig += 0.02 * np.random.default_rng(seed).standard_normal(t.shape)
        return sig.astype(np.float32)

    return _make
