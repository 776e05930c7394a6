"""EnCodec extractor: residual-VQ codes, quantized embeddings or encoder latents of Meta's codec.

The 24 kHz model is causal and mono (75 Hz); the 48 kHz model is stereo (150 Hz) and encodes 1 s
segments, each with its own loudness normalisation, which are stitched back into one stream here.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from minecli import (MinecliError, MissingDependencyError, ModelExtractor, StreamSpec, WeightsNotFoundError,
                     hookimpl, param)

if TYPE_CHECKING:
    import torch

ModelName = Literal["24khz", "48khz"]
Output = Literal["codes", "quantized", "latent"]

_ROOT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"
HOP = 320  # product of the SEANet strides (8 * 5 * 4 * 2), the same for both models
VOCAB = 1024
LATENT_DIM = 128
#: the encoder's last convolution (kernel 7 at the frame rate) reflect-pads 6 frames on the left, and
#: encodec zero-extends shorter input first; so an utterance of fewer frames sees what follows its end
#: and gives other frames in a padded batch than alone (up to 0.08 measured): it is encoded alone
MIN_BATCH_FRAMES = 7


@dataclass(frozen=True)
class _ModelInfo:
    sample_rate: int
    channels: int
    bandwidths: tuple[float, ...]
    checkpoint: str
    builder: str

    @property
    def frame_rate(self) -> int:
        return self.sample_rate // HOP

    def n_codebooks(self, bandwidth: float) -> int:
        """Codebooks used at a bandwidth: each carries log2(1024) = 10 bits per frame."""
        return int(round(bandwidth * 1000 / (self.frame_rate * math.log2(VOCAB))))


MODELS: dict[str, _ModelInfo] = {
    "24khz": _ModelInfo(24000, 1, (1.5, 3.0, 6.0, 12.0, 24.0), "encodec_24khz-d7cc33bc.th", "encodec_model_24khz"),
    "48khz": _ModelInfo(48000, 2, (3.0, 6.0, 12.0, 24.0), "encodec_48khz-7e698e3e.th", "encodec_model_48khz"),
}


@dataclass(frozen=True)
class EncodecParams:
    model: ModelName = param("24khz", help="'24khz' (mono, causal, 75 Hz) or '48khz' (stereo, 1 s segments, 150 Hz)")
    bandwidth: float = param(6.0, help="target kbps: 1.5/3/6/12/24 at 24 kHz (2/4/8/16/32 codebooks), "
                                       "3/6/12/24 at 48 kHz (2/4/8/16 codebooks)")
    output: Output = param("codes", help="'codes' (int, 1024 entries per codebook), 'quantized' (128-d sum of the "
                                         "selected codebook vectors) or 'latent' (128-d encoder output before "
                                         "quantization)")
    n_codebooks: int | None = param(None, help="keep the first k codebooks (null: all that the bandwidth uses)")
    codebook: int | None = param(None, help="keep one codebook only (0-based) instead of the first k")
    checkpoint: str | None = param(None, help="local .th state dict; null downloads through torch.hub into its "
                                              "cache (skipped when MINECLI_OFFLINE or HF_HUB_OFFLINE is set)")

    def __post_init__(self) -> None:
        info = MODELS[self.model]
        if self.bandwidth not in info.bandwidths:
            allowed = ", ".join(f"{b:g}" for b in info.bandwidths)
            raise ValueError(f"bandwidth {self.bandwidth:g} kbps is not offered by the {self.model} model; "
                             f"choose one of {allowed}")
        available = info.n_codebooks(self.bandwidth)
        if self.n_codebooks is not None and self.codebook is not None:
            raise ValueError("set either n_codebooks (the first k codebooks) or codebook (one codebook), not both")
        if self.output == "latent" and (self.n_codebooks is not None or self.codebook is not None):
            raise ValueError("n_codebooks and codebook select codebooks, so they apply to output 'codes' or "
                             "'quantized', not 'latent'")
        if self.n_codebooks is not None and not 1 <= self.n_codebooks <= available:
            raise ValueError(f"n_codebooks must be between 1 and {available} (the codebooks used at "
                             f"{self.bandwidth:g} kbps), not {self.n_codebooks}; raise bandwidth for more")
        if self.codebook is not None and not 0 <= self.codebook < available:
            raise ValueError(f"codebook must be between 0 and {available - 1} at {self.bandwidth:g} kbps, "
                             f"not {self.codebook}")

    @property
    def selected(self) -> list[int]:
        """Indices of the codebooks that make up the output."""
        if self.codebook is not None:
            return [self.codebook]
        return list(range(self.n_codebooks or MODELS[self.model].n_codebooks(self.bandwidth)))


def _import_encodec() -> Any:
    try:
        import encodec
    except ImportError:
        raise MissingDependencyError("encodec", "encodec", "The 'encodec' extractor") from None
    return encodec


def _as_channels(wave: "torch.Tensor", channels: int) -> "torch.Tensor":
    """Downmix or duplicate to the model's channel count, so direct callers need not."""
    if wave.dim() == 1:
        wave = wave[None]
    if wave.dim() != 2:
        raise ValueError(f"expected a waveform [channels, samples], got shape {tuple(wave.shape)}")
    if wave.shape[0] == channels:
        return wave
    if channels == 1:
        return wave.mean(dim=0, keepdim=True)
    if wave.shape[0] == 1:
        return wave.expand(channels, -1)
    raise ValueError(f"cannot map {wave.shape[0]} audio channels to the {channels} the model expects")


class Encodec(ModelExtractor):
    """EnCodec codes, quantized embeddings or latents, through the model's own ``encode``."""

    name = "encodec"
    summary = "EnCodec 24/48 kHz: RVQ codes (1024 entries), quantized or pre-quantization 128-d embeddings"
    Params = EncodecParams
    #: measured on a 2-core CPU: batches of 8 ran at half the speed of single utterances; extract_batch
    #: still pads and batches when asked (e.g. on a GPU)
    batch_size = 1

    def spec(self) -> StreamSpec:
        p = self.params
        info = MODELS[p.model]
        if p.output == "codes":
            return StreamSpec("index", info.frame_rate, vocab_size=VOCAB, n_codebooks=len(p.selected),
                              sample_rate=info.sample_rate, channels=info.channels)
        return StreamSpec("float", info.frame_rate, dim=LATENT_DIM, sample_rate=info.sample_rate,
                          channels=info.channels)

    # Residual VQ is greedy: fewer codebooks (a lower bandwidth, the first k, one of them) are columns
    # of the codes at the highest bandwidth, so every choice is cut from one cached extraction.
    selection_params = ("bandwidth", "n_codebooks", "codebook")

    def full_params(self) -> EncodecParams:
        """Codes at the model's highest bandwidth; quantized and latent outputs are not cut from codes."""
        p = self.params
        if p.output != "codes":
            return p
        from dataclasses import replace

        return replace(p, bandwidth=max(MODELS[p.model].bandwidths), n_codebooks=None, codebook=None)

    def select(self, features: "torch.Tensor") -> "torch.Tensor":
        """The selected codebooks' columns of the full codes."""
        return features[:, self.params.selected] if self.params.output == "codes" else features

    def weights_url(self) -> str:
        """Where the pretrained state dict of the chosen model is published."""
        return _ROOT_URL + MODELS[self.params.model].checkpoint

    def build_architecture(self) -> Any:
        """The chosen EnCodec model with random weights (no download)."""
        encodec = _import_encodec()
        with warnings.catch_warnings():
            # encodec still calls the old torch.nn.utils.weight_norm, which warns on every build
            warnings.simplefilter("ignore", FutureWarning)
            return getattr(encodec.EncodecModel, MODELS[self.params.model].builder)(pretrained=False)

    def use_random_weights(self, seed: int = 0) -> None:
        """Use the architecture with random weights instead of the pretrained ones (tests, benchmarks)."""
        import torch

        torch.manual_seed(seed)
        self._model = self.build_architecture()
        self._loaded = False

    def _load_state(self) -> dict[str, Any]:
        import torch

        name = MODELS[self.params.model].checkpoint
        if self.params.checkpoint:
            path = os.path.expanduser(self.params.checkpoint)
            if not os.path.isfile(path):
                raise WeightsNotFoundError(f"EnCodec checkpoint not found: {path}. Download {self.weights_url()} "
                                           "and set checkpoint to the path of the file")
            return torch.load(path, map_location="cpu", weights_only=True)
        cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
        cached = os.path.join(cache_dir, name)
        if os.path.isfile(cached) or not self.offline():
            try:
                return torch.hub.load_state_dict_from_url(self.weights_url(), map_location="cpu", check_hash=True,
                                                          weights_only=True)
            except Exception as exc:  # URLError, hash mismatch, disk errors: all mean "get the file by hand"
                reason = f" (download failed: {type(exc).__name__}: {exc})".replace("\n", " ")
        else:
            reason = " (downloads are off: MINECLI_OFFLINE or HF_HUB_OFFLINE is set)"
        raise WeightsNotFoundError(f"EnCodec {self.params.model} weights not found: download {self.weights_url()} "
                                   f"into {cache_dir}/ or set checkpoint to the path of {name}{reason}")

    def load(self) -> None:
        if self._model is None:
            model = self.build_architecture()
            state = self._load_state()
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise MinecliError(f"the EnCodec checkpoint does not fit the {self.params.model} model: {first}. "
                                   f"Use {MODELS[self.params.model].checkpoint}") from None
            self._model = model
        model = self._model
        info = MODELS[self.params.model]
        if model.sample_rate != info.sample_rate or model.channels != info.channels:
            raise MinecliError(f"the EnCodec model given is {model.sample_rate} Hz with {model.channels} channels, "
                               f"but params.model is {self.params.model}")
        model.set_target_bandwidth(self.params.bandwidth)
        model.eval()

    def extract_batch(self, waves: list["torch.Tensor"], sample_rate: int,
                      paths: list[str | None] | None = None) -> list["torch.Tensor"]:
        """Extract several utterances; the causal 24 kHz model runs them as one padded batch."""
        import torch

        self.ensure_loaded()
        self._check_rate(sample_rate)
        info = MODELS[self.params.model]
        waves = [_as_channels(w.float(), info.channels) for w in waves]
        with torch.inference_mode():
            if self._model.segment is None:
                pairs = self._encode_padded(waves)
            else:
                pairs = [self._encode_segmented(w) for w in waves]
            # Results go back to the CPU, where the cache writes them.
            return [self._select(codes, latent).cpu() for codes, latent in pairs]

    def _run_encode(self, x: "torch.Tensor") -> tuple[list[Any], list["torch.Tensor"]]:
        """model.encode, also recording the encoder output of each segment (the pre-quantization latent)."""
        latents: list[torch.Tensor] = []
        hook = None
        if self.params.output == "latent":
            hook = self._model.encoder.register_forward_hook(lambda _m, _i, out: latents.append(out))
        try:
            frames = self._model.encode(x)
        finally:
            if hook is not None:
                hook.remove()
        return frames, latents

    def _encode_padded(self, waves: list["torch.Tensor"]) -> list[tuple["torch.Tensor", "torch.Tensor | None"]]:
        import torch

        # Zero-padding every utterance to whole frames means the causal model sees the same samples
        # alone or in a batch: frame t only depends on samples before (t + 1) * HOP.
        n_frames = [math.ceil(w.shape[-1] / HOP) for w in waves]
        longest = max(n_frames, default=0)
        short = [i for i, n in enumerate(n_frames) if 0 < n < MIN_BATCH_FRAMES]
        if short and len(waves) > 1:
            # Too short to share padding (see MIN_BATCH_FRAMES): those go one at a time.
            alone = {i: self._encode_padded([waves[i]])[0] for i in short}
            rest = [i for i in range(len(waves)) if i not in alone]
            together = dict(zip(rest, self._encode_padded([waves[i] for i in rest]))) if rest else {}
            return [alone[i] if i in alone else together[i] for i in range(len(waves))]
        if longest == 0:
            return [(torch.zeros(len(self.params.selected), 0, dtype=torch.long), torch.zeros(LATENT_DIM, 0))
                    for _ in waves]
        from minecli.core.batching import pad_batch

        batch, _ = pad_batch(waves, multiple=HOP, device=self.device)
        frames, latents = self._run_encode(batch)
        codes = frames[0][0]  # [B, K, T]
        latent = latents[0] if latents else None
        return [(codes[i, :, :n], latent[i, :, :n] if latent is not None else None) for i, n in enumerate(n_frames)]

    def _encode_segmented(self, wave: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor | None"]:
        """Encode with the model's overlapping segments and keep, for each output frame, the segment
        whose half of the overlap its centre falls in."""
        import torch

        model = self._model
        length = wave.shape[-1]
        n_frames = math.ceil(length / HOP)
        if n_frames == 0:
            return torch.zeros(len(self.params.selected), 0, dtype=torch.long), torch.zeros(LATENT_DIM, 0)
        frames, latents = self._run_encode(wave[None].to(self.device))
        stride = model.segment_stride
        overlap = model.segment_length - stride
        start = torch.arange(n_frames, dtype=torch.float64) * HOP
        seg = torch.clamp(torch.floor((start + HOP / 2 - overlap / 2) / stride), 0, len(frames) - 1).long()
        # Odd segments start half a frame off the global grid (stride 47520 = 148.5 frames); take
        # the local frame that holds the global frame's first sample.
        local = torch.floor((start - seg * stride) / HOP).long().clamp(min=0)
        sizes = torch.tensor([codes.shape[-1] for codes, _ in frames])
        local = torch.minimum(local, sizes[seg] - 1)
        codes_all = [codes[0] for codes, _ in frames]
        codes = torch.stack([codes_all[s][:, j] for s, j in zip(seg.tolist(), local.tolist())], dim=1)
        latent = None
        if latents:
            latent = torch.stack([latents[s][0, :, j] for s, j in zip(seg.tolist(), local.tolist())], dim=1)
        return codes, latent

    def _select(self, codes: "torch.Tensor", latent: "torch.Tensor | None") -> "torch.Tensor":
        """Turn ``[K, T]`` codes (and ``[128, T]`` latents) into the requested ``[T, width]`` stream."""
        import torch

        p = self.params
        if p.output == "latent":
            assert latent is not None
            return latent.T.contiguous().float()
        chosen = codes[p.selected]  # [k, T]
        if p.output == "codes":
            return chosen.T.contiguous().long()
        layers = self._model.quantizer.vq.layers
        quantized = torch.zeros(LATENT_DIM, codes.shape[-1], device=codes.device)
        for idx, row in zip(p.selected, chosen):
            quantized += layers[idx].decode(row[None])[0]
        return quantized.T.contiguous().float()


@hookimpl
def register_extractors(register):
    register(Encodec)
