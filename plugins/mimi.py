"""Mimi extractor (Kyutai's streaming codec) through transformers' ``MimiModel``.

24 kHz mono in, 12.5 Hz out: split-RVQ codes (2048 entries; codebook 0 is the semantic one distilled
from WavLM, the rest acoustic), the 512-d latent before quantization, or its quantized version.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from minecli import (MinecliError, MissingDependencyError, ModelExtractor, StreamSpec, WeightsNotFoundError,
                     hookimpl, param)

if TYPE_CHECKING:
    import torch

Output = Literal["codes", "latent", "quantized"]

SAMPLE_RATE = 24000
FRAME_RATE = 12.5
FRAME_SIZE = 1920  # samples per frame: 24000 / 12.5
VOCAB = 2048
MAX_CODEBOOKS = 32
LATENT_DIM = 512
DEFAULT_MODEL_ID = "kyutai/mimi"


@dataclass(frozen=True)
class MimiParams:
    output: Output = param("codes", help="'codes' (int, 2048 entries), 'latent' (512-d, before quantization) or "
                                         "'quantized' (512-d, decoded from the first n_codebooks codes)")
    n_codebooks: int = param(8, help="first k codebooks, 1-32 (codebook 0 is semantic; Moshi uses 8)")
    model_id: str = param(DEFAULT_MODEL_ID, help="Hugging Face repository of the weights (read from the hub cache; "
                                                 "HF_HUB_OFFLINE=1 forbids downloads)")
    checkpoint: str | None = param(None, help="local directory with config.json and model.safetensors, instead of "
                                              "model_id")

    def __post_init__(self) -> None:
        if not 1 <= self.n_codebooks <= MAX_CODEBOOKS:
            raise ValueError(f"n_codebooks must be between 1 and {MAX_CODEBOOKS}, not {self.n_codebooks}")
        if not self.model_id.strip():
            raise ValueError("model_id must name a Hugging Face repository such as 'kyutai/mimi'")


def _import_mimi() -> Any:
    try:
        from transformers import MimiModel
    except ImportError:
        raise MissingDependencyError("transformers", "mimi", "The 'mimi' extractor") from None
    return MimiModel


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # transformers always brings huggingface_hub; this is only a fallback
        return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


class Mimi(ModelExtractor):
    """Mimi codes or latents at 12.5 Hz from 24 kHz mono audio."""

    name = "mimi"
    summary = "Mimi (Kyutai) 12.5 Hz: first k of 32 codes (2048 entries, 0 = semantic) or the 512-d latent"
    Params = MimiParams
    #: measured on a 2-core CPU: batches of 8 ran at half the speed of single utterances; extract_batch
    #: still pads and batches when asked (e.g. on a GPU)
    batch_size = 1

    # Split RVQ is greedy: the first k codebooks are the first k columns of all 32, so every k is cut
    # from one cached extraction.
    selection_params = ("n_codebooks",)

    def full_params(self) -> MimiParams:
        """All 32 codebooks for codes; quantized and latent outputs are not cut from codes."""
        from dataclasses import replace

        return replace(self.params, n_codebooks=MAX_CODEBOOKS) if self.params.output == "codes" else self.params

    def select(self, features: Any) -> Any:
        """The first n_codebooks columns of the full codes."""
        return features[:, : self.params.n_codebooks] if self.params.output == "codes" else features

    def spec(self) -> StreamSpec:
        p = self.params
        if p.output == "codes":
            return StreamSpec("index", FRAME_RATE, vocab_size=VOCAB, n_codebooks=p.n_codebooks,
                              sample_rate=SAMPLE_RATE, channels=1)
        return StreamSpec("float", FRAME_RATE, dim=LATENT_DIM, sample_rate=SAMPLE_RATE, channels=1)

    def build_architecture(self, config: Any = None) -> Any:
        """A Mimi model with random weights (no download): the kyutai/mimi architecture by default."""
        MimiModel = _import_mimi()
        from transformers import MimiConfig

        return MimiModel(config or MimiConfig())

    def use_random_weights(self, seed: int = 0) -> None:
        """Use the architecture with random weights instead of the pretrained ones (tests, benchmarks)."""
        import torch

        torch.manual_seed(seed)
        self._model = self.build_architecture()
        self._loaded = False

    def _load_pretrained(self) -> Any:
        MimiModel = _import_mimi()
        p = self.params
        if p.checkpoint:
            path = os.path.expanduser(p.checkpoint)
            if not os.path.isfile(os.path.join(path, "config.json")):
                raise WeightsNotFoundError(f"Mimi checkpoint directory {path} has no config.json: download "
                                           f"config.json and model.safetensors from https://huggingface.co/"
                                           f"{DEFAULT_MODEL_ID} into it")
            source = path
        else:
            source = p.model_id
        try:
            return MimiModel.from_pretrained(source)
        except OSError as exc:  # transformers reports missing files and failed hub lookups as OSError
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
            if p.checkpoint:
                raise WeightsNotFoundError(f"cannot load Mimi weights from {source}: {str(exc).splitlines()[0]}. It "
                                           "needs config.json and model.safetensors from https://huggingface.co/"
                                           f"{DEFAULT_MODEL_ID}") from None
            raise WeightsNotFoundError(
                f"Mimi weights not found{offline}: download config.json and model.safetensors from "
                f"https://huggingface.co/{source} (e.g. 'hf download {source}') into the hub cache {_hub_cache()}, "
                "or into a directory given as checkpoint") from None

    def load(self) -> None:
        if self._model is None:
            self._model = self._load_pretrained()
        cfg = self._model.config
        problems = []
        if cfg.sampling_rate != SAMPLE_RATE:
            problems.append(f"sampling_rate {cfg.sampling_rate} (expected {SAMPLE_RATE})")
        if abs(float(cfg.frame_rate) - FRAME_RATE) > 1e-6:
            problems.append(f"frame_rate {cfg.frame_rate} (expected {FRAME_RATE})")
        if cfg.codebook_size != VOCAB:
            problems.append(f"codebook_size {cfg.codebook_size} (expected {VOCAB})")
        if cfg.num_quantizers < self.params.n_codebooks:
            problems.append(f"only {cfg.num_quantizers} codebooks (n_codebooks is {self.params.n_codebooks})")
        if cfg.hidden_size != LATENT_DIM:
            problems.append(f"hidden_size {cfg.hidden_size} (expected {LATENT_DIM})")
        if problems:
            raise MinecliError("the Mimi model does not match the kyutai/mimi layout: " + "; ".join(problems))
        if self.params.output == "latent" and not hasattr(self._model.encoder, "encoder_seanet"):
            raise MinecliError("mimi output 'latent' needs transformers>=5 (its MimiModel.encoder returns the "
                               "latents); upgrade with: pip install 'transformers>=5'")
        self._model.eval()

    def extract_batch(self, waves: list["torch.Tensor"], sample_rate: int,
                      paths: list[str | None] | None = None) -> list["torch.Tensor"]:
        """Extract several utterances as one zero-padded batch."""
        import torch

        self.ensure_loaded()
        self._check_rate(sample_rate)
        p = self.params
        monos = [w.float().mean(dim=0) if w.dim() == 2 else w.float() for w in waves]
        # Mimi is causal (convolutions and attention), so zero-padding each utterance to whole frames
        # and then to the longest one leaves every real frame as it is when encoded alone.
        n_frames = [math.ceil(m.shape[-1] / FRAME_SIZE) for m in monos]
        width = p.n_codebooks if p.output == "codes" else LATENT_DIM
        dtype = torch.long if p.output == "codes" else torch.float32
        longest = max(n_frames, default=0)
        if longest == 0:
            return [torch.zeros(0, width, dtype=dtype) for _ in waves]
        from minecli.core.batching import pad_batch

        batch, _ = pad_batch(monos, multiple=FRAME_SIZE, device=self.device)
        with torch.inference_mode():
            if p.output == "codes":
                out = self._model.encode(batch, num_quantizers=p.n_codebooks).audio_codes  # [B, K, T]
            elif p.output == "latent":
                out = self._model.encoder(batch).latents  # [B, 512, T]
            else:
                codes = self._model.encode(batch, num_quantizers=p.n_codebooks).audio_codes
                out = self._model.quantizer.decode(codes)
        if out.shape[-1] < longest:
            raise MinecliError(f"Mimi returned {out.shape[-1]} frames for {longest * FRAME_SIZE} samples; "
                               f"expected {longest}")
        out = out.cpu()  # the cache writes from the CPU
        return [out[i, :, :n].T.contiguous().to(dtype) for i, n in enumerate(n_frames)]


@hookimpl
def register_extractors(register):
    register(Mimi)
