"""Audio input: read with soundfile, downmix, resample with soxr."""
from __future__ import annotations

import os

import numpy as np

from .errors import MinecliError


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, samples]`` and its sample rate."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise MinecliError(f"audio file not found: {path}") from None
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError with terse text
        raise MinecliError(f"cannot read audio file {path}: {exc}. minecli reads WAV, FLAC and OGG "
                           "through soundfile; convert other formats first") from None
    return np.ascontiguousarray(data.T), int(rate)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample ``[channels, samples]`` with soxr (high quality, much faster than torchaudio here)."""
    if rate_in == rate_out:
        return wave
    import soxr

    out = soxr.resample(wave.T, rate_in, rate_out, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, wave.shape[0]).T)


def prepare(wave: np.ndarray, rate: int, target_rate: int | None, channels: int = 1) -> np.ndarray:
    """Downmix (or duplicate mono) to `channels` and resample to `target_rate`."""
    if wave.ndim == 1:
        wave = wave[None, :]
    if channels == 1 and wave.shape[0] > 1:
        wave = wave.mean(axis=0, keepdims=True)
    elif channels > 1 and wave.shape[0] == 1:
        wave = np.repeat(wave, channels, axis=0)
    elif channels > 1 and wave.shape[0] != channels:
        raise MinecliError(f"cannot map {wave.shape[0]} audio channels to the {channels} the extractor expects")
    if target_rate is not None:
        wave = resample(wave, rate, target_rate)
    return wave.astype(np.float32, copy=False)


def load_for(path: str | os.PathLike[str], target_rate: int | None, channels: int = 1) -> np.ndarray:
    """Read a file and prepare it for an extractor: ``[channels, samples]`` at `target_rate`."""
    wave, rate = read_audio(path)
    return prepare(wave, rate, target_rate, channels)


def conversion_note(paths: list[str], target_rate: int | None, channels: int, side: str) -> str | None:
    """One line saying how many files are downmixed or resampled on the way in (headers only), or None."""
    import soundfile as sf

    mixed = resampled = 0
    rates: dict[int, int] = {}
    for path in paths:
        try:
            info = sf.info(str(path))
        except Exception:  # noqa: BLE001 - unreadable files are reported (or skipped) by extraction
            continue
        if channels == 1 and info.channels > 1:
            mixed += 1
        if target_rate is not None and info.samplerate != target_rate:
            resampled += 1
            rates[info.samplerate] = rates.get(info.samplerate, 0) + 1
    parts = []
    if mixed:
        parts.append(f"{mixed} of {len(paths)} files have more than one channel and are averaged to mono")
    if resampled:
        found = ", ".join(f"{n} at {r} Hz" for r, n in sorted(rates.items()))
        parts.append(f"{resampled} of {len(paths)} files are resampled to {target_rate} Hz ({found})")
    return f"{side}: " + "; ".join(parts) if parts else None
