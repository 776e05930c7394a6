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
    batch_size = 16

    def _mono(self, wave: Any) -> Any:
        return wave.mean(dim=0) if wave.dim() == 2 else wave

    def _transform(self, wave: Any) -> Any:
        """Run the transform on a mono signal; ``None`` when the signal is too short for any frame.

        The centred STFT reflect-pads n_fft / 2 samples, which torch refuses for shorter input, so very
        short input is zero-extended first and the frames past ``1 + samples // hop`` are dropped.
        """
        import torch

        p = self.params
        x = self._mono(wave)
        n = x.shape[-1]
        if p.center:
            if n == 0:
                return None
            need = p.n_fft // 2 + 1
            if n < need:
                x = torch.nn.functional.pad(x, (0, need - n))
            return self._tf(x)[..., : 1 + n // p.hop]
        if n < p.n_fft:
            return None
        return self._tf(x)


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
        self._tf = load_torchaudio().transforms.Spectrogram(
            n_fft=p.n_fft, win_length=p.win_length, hop_length=p.hop, window_fn=_window_fn(p.window),
            power=None, center=p.center)

    def __call__(self, wave: Any, sample_rate: int, path: str | None = None) -> Any:
        import torch

        self._check_rate(sample_rate)
        self.ensure_loaded()
        spec = self._transform(wave)  # [F, T] complex
        if spec is None:
            return torch.zeros(0, self.spec().width)
        return torch.cat([spec.real, spec.imag], dim=0).T.contiguous().float()


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
        self._tf = load_torchaudio().transforms.MelSpectrogram(
            sample_rate=p.sample_rate, n_fft=p.n_fft, win_length=p.win_length, hop_length=p.hop,
            f_min=p.f_min, f_max=p.f_max, n_mels=p.n_mels, window_fn=_window_fn(p.window), power=p.power,
            center=p.center)

    def __call__(self, wave: Any, sample_rate: int, path: str | None = None) -> Any:
        import torch

        self._check_rate(sample_rate)
        self.ensure_loaded()
        mel = self._transform(wave)  # [n_mels, T]
        if mel is None:
            return torch.zeros(0, self.params.n_mels)
        return torch.log(torch.clamp(mel, min=self.params.log_floor)).T.contiguous().float()


@hookimpl
def register_extractors(register):
    register(ComplexSpec)
    register(LogMel)
