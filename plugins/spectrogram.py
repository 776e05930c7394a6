"""Built-in signal-processing extractors: complex spectrogram and log-mel spectrogram."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from minecli import Extractor, StreamSpec, hookimpl, param

Window = Literal["hann", "hamming", "blackman", "rect"]


def _hop(sample_rate: int, hop_length: int | None, frame_rate: float) -> int:
    if hop_length is not None:
        return hop_length
    hop = sample_rate / frame_rate
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"frame_rate {frame_rate:g} Hz does not divide sample_rate {sample_rate} into a whole "
                         "hop; set hop_length instead")
    return int(round(hop))


@dataclass(frozen=True)
class STFTParams:
    sample_rate: int = param(16000, help="audio is resampled to this rate (Hz) before the STFT")
    n_fft: int = param(512, help="FFT size; the stream has n_fft/2 + 1 bins")
    hop_length: int | None = param(None, help="hop in samples; null derives it from frame_rate")
    frame_rate: float = param(100.0, help="frames per second when hop_length is null (e.g. 75 to match EnCodec 24 kHz)")
    win_length: int | None = param(None, help="window length in samples (null: n_fft)")
    window: Window = param("hann", help="analysis window")
    center: bool = param(True, help="pad so frame t is centred on sample t*hop (frames = 1 + samples // hop)")

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_fft < 2:
            raise ValueError(f"sample_rate and n_fft must be positive (got {self.sample_rate}, {self.n_fft})")
        hop = _hop(self.sample_rate, self.hop_length, self.frame_rate)
        if hop < 1:
            raise ValueError(f"hop_length must be at least 1, not {hop}")
        if (self.win_length or self.n_fft) > self.n_fft:
            raise ValueError(f"win_length {self.win_length} is larger than n_fft {self.n_fft}")

    @property
    def hop(self) -> int:
        return _hop(self.sample_rate, self.hop_length, self.frame_rate)


def _window_fn(name: str) -> Any:
    import torch

    return {"hann": torch.hann_window, "hamming": torch.hamming_window,
            "blackman": torch.blackman_window, "rect": torch.ones}[name]


class _STFTBase(Extractor):
    """Frames of an STFT-based transform, batched: each utterance is centre-padded on its own, so the
    zero padding that joins it to a batch only follows its last window and its frames are unchanged."""

    batch_size = 16

    def _mono(self, wave: Any) -> Any:
        return wave.mean(dim=0) if wave.dim() == 2 else wave

    def modules(self) -> list[Any]:
        """The torchaudio transform (its window and filterbank move to the device)."""
        return [self._tf]

    def _framed(self, x: Any) -> tuple[Any, int] | None:
        """The signal the uncentred transform frames, and its frame count; None when it has no frame.

        Centring reflect-pads n_fft / 2 samples each side as torch.stft does, which torch refuses for
        shorter input, so very short input is zero-extended first and its frames past
        ``1 + samples // hop`` are dropped.
        """
        import torch

        p = self.params
        n = x.shape[-1]
        limit = None
        if p.center:
            if n == 0:
                return None
            need = p.n_fft // 2 + 1
            if n < need:
                x = torch.nn.functional.pad(x, (0, need - n))
            half = p.n_fft // 2
            x = torch.nn.functional.pad(x[None, None], (half, half), mode="reflect")[0, 0]
            limit = 1 + n // p.hop
        if x.shape[-1] < p.n_fft:
            return None
        frames = 1 + (x.shape[-1] - p.n_fft) // p.hop
        return x, frames if limit is None else min(frames, limit)

    def _output(self, raw: Any) -> Any:
        """``[T, width]`` float32 from the transform's ``[F, T]`` frames."""
        raise NotImplementedError

    def __call__(self, wave: Any, sample_rate: int, path: str | None = None) -> Any:
        """One utterance: a batch of one."""
        return self.extract_batch([wave], sample_rate, [path])[0]

    def extract_batch(self, waves: list[Any], sample_rate: int,
                      paths: list[str | None] | None = None) -> list[Any]:
        """Zero-pad the centred utterances into one batch on the device, transform, cut each back."""
        import torch

        from minecli.core.batching import pad_batch

        self._check_rate(sample_rate)
        self.ensure_loaded()
        out = [torch.zeros(0, self.spec().width) for _ in waves]
        keep, signals, counts = [], [], []
        for i, wave in enumerate(waves):
            framed = self._framed(self._mono(wave.float()))
            if framed is not None:
                keep.append(i)
                signals.append(framed[0])
                counts.append(framed[1])
        if not keep:
            return out
        batch, _ = pad_batch(signals, device=self.device)
        with torch.inference_mode():
            raw = self._tf(batch[:, 0])  # [B, F, T]
        for row, i in enumerate(keep):
            out[i] = self._output(raw[row, :, : counts[row]]).cpu()
        return out


class ComplexSpec(_STFTBase):
    """Real and imaginary STFT parts stacked: ``[T, 2 * (n_fft / 2 + 1)]``."""

    name = "complex_spec"
    summary = "complex STFT, real and imaginary parts stacked (2 x (n_fft/2+1) dims)"
    Params = STFTParams

    def spec(self) -> StreamSpec:
        p = self.params
        return StreamSpec("float", p.sample_rate / p.hop, dim=2 * (p.n_fft // 2 + 1), sample_rate=p.sample_rate)

    def load(self) -> None:
        from minecli.core.deps import load_torchaudio

        p = self.params
        # Uncentred: extract_batch centre-pads each utterance itself (see _STFTBase).
        self._tf = load_torchaudio().transforms.Spectrogram(
            n_fft=p.n_fft, win_length=p.win_length, hop_length=p.hop, window_fn=_window_fn(p.window),
            power=None, center=False)

    def _output(self, raw: Any) -> Any:
        import torch

        return torch.cat([raw.real, raw.imag], dim=0).T.contiguous().float()


@dataclass(frozen=True)
class MelParams(STFTParams):
    n_mels: int = param(80, help="number of mel bands")
    f_min: float = param(0.0, help="lowest band edge (Hz)")
    f_max: float | None = param(None, help="highest band edge (Hz); null is sample_rate / 2")
    log_floor: float = param(1e-5, help="log(max(mel, floor)): a fixed reference, never a per-utterance max")
    power: float = param(2.0, help="1 for magnitude, 2 for power")


class LogMel(_STFTBase):
    """Log-mel spectrogram with a fixed floor, so levels compare across utterances."""

    name = "mel"
    summary = "log-mel spectrogram (fixed floor, natural log), n_mels dims"
    Params = MelParams

    def spec(self) -> StreamSpec:
        p = self.params
        return StreamSpec("float", p.sample_rate / p.hop, dim=p.n_mels, sample_rate=p.sample_rate)

    def load(self) -> None:
        from minecli.core.deps import load_torchaudio

        p = self.params
        # Uncentred: extract_batch centre-pads each utterance itself (see _STFTBase).
        self._tf = load_torchaudio().transforms.MelSpectrogram(
            sample_rate=p.sample_rate, n_fft=p.n_fft, win_length=p.win_length, hop_length=p.hop,
            f_min=p.f_min, f_max=p.f_max, n_mels=p.n_mels, window_fn=_window_fn(p.window), power=p.power,
            center=False)

    def _output(self, raw: Any) -> Any:
        import torch

        return torch.log(torch.clamp(raw, min=self.params.log_floor)).T.contiguous().float()


@hookimpl
def register_extractors(register):
    register(ComplexSpec)
    register(LogMel)
