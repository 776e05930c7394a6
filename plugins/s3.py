"""S3 speech tokens (CosyVoice's supervised semantic tokenizers) through the ``s3tokenizer`` package.

16 kHz audio goes through the package's own 128-bin log-mel front end and the encoder; utterances
are batched with padding and lengths. v1 tokens come from a 4096-entry VQ codebook, v2 and v3 from an
FSQ with 3**8 = 6561 values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from minecli import (MinecliError, MissingDependencyError, ModelExtractor, StreamSpec, WeightsNotFoundError,
                     hookimpl, param)

if TYPE_CHECKING:
    import torch

ModelName = Literal["speech_tokenizer_v1", "speech_tokenizer_v1_25hz", "speech_tokenizer_v2_25hz",
                    "speech_tokenizer_v3_25hz"]

SAMPLE_RATE = 16000
MEL_HOP = 160  # samples per log-mel frame of the front end (10 ms)
N_MELS = 128

#: frame rate (Hz) and vocabulary of each model, known without importing the package
MODELS: dict[str, tuple[float, int]] = {
    "speech_tokenizer_v1": (50.0, 4096),
    "speech_tokenizer_v1_25hz": (25.0, 4096),
    "speech_tokenizer_v2_25hz": (25.0, 3 ** 8),
    "speech_tokenizer_v3_25hz": (25.0, 3 ** 8),
}


def default_download_root() -> str:
    """The cache directory s3tokenizer downloads into (``$XDG_CACHE_HOME/s3tokenizer``)."""
    base = os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(base, "s3tokenizer")


@dataclass(frozen=True)
class S3Params:
    model: ModelName = param("speech_tokenizer_v2_25hz", help="speech_tokenizer_v1 (50 Hz, 4096), _v1_25hz "
                                                              "(25 Hz, 4096), _v2_25hz or _v3_25hz (25 Hz, 6561)")
    checkpoint: str | None = param(None, help="local .onnx (or .pt state dict) of that model; null downloads it "
                                              "into download_root (skipped when MINECLI_OFFLINE or "
                                              "HF_HUB_OFFLINE is set)")
    download_root: str | None = param(None, help="cache directory for downloads (null: ~/.cache/s3tokenizer)")

    def __post_init__(self) -> None:
        if self.checkpoint is not None and not str(self.checkpoint).strip():
            raise ValueError("checkpoint must be a path to a .onnx or .pt file, or null")
        if self.checkpoint and not str(self.checkpoint).endswith((".onnx", ".pt", ".pth")):
            raise ValueError(f"checkpoint must be a .onnx file (or a .pt state dict), not {self.checkpoint!r}")


def _import_s3tokenizer() -> Any:
    try:
        import s3tokenizer
    except ImportError:
        raise MissingDependencyError("s3tokenizer", "s3", "The 's3' extractor") from None
    return s3tokenizer


class S3Tokens(ModelExtractor):
    """S3 speech tokens: int64 ``[T, 1]`` at 50 or 25 Hz from 16 kHz audio."""

    name = "s3"
    summary = "S3 speech tokens (CosyVoice): v1 50 Hz x 4096, v1_25hz 25 Hz x 4096, v2/v3 25 Hz x 6561"
    Params = S3Params
    #: measured on a 2-core CPU: batches of 8 were no faster than single utterances; extract_batch
    #: still pads and batches when asked (e.g. on a GPU)
    batch_size = 1

    def spec(self) -> StreamSpec:
        rate, vocab = MODELS[self.params.model]
        return StreamSpec("index", rate, vocab_size=vocab, n_codebooks=1, sample_rate=SAMPLE_RATE, channels=1)

    def build_architecture(self, config: Any = None) -> Any:
        """The chosen model, built by its canonical name, with random weights (no download).

        Building by name matters: ``s3tokenizer.load_model(path)`` infers the model from the path and
        silently builds the 50 Hz model for a 25 Hz checkpoint.
        """
        s3 = _import_s3tokenizer()
        name = self.params.model
        if "v3" in name:
            from s3tokenizer.model_v3 import ModelConfigV3

            return s3.S3TokenizerV3(name, config or ModelConfigV3())
        if "v2" in name:
            from s3tokenizer.model_v2 import ModelConfig as ModelConfigV2

            return s3.S3TokenizerV2(name, config or ModelConfigV2())
        from s3tokenizer.model import ModelConfig

        return s3.S3Tokenizer(name, config or ModelConfig())

    def use_random_weights(self, seed: int = 0) -> None:
        """Use the architecture with random weights instead of the pretrained ones (tests, benchmarks)."""
        import torch

        torch.manual_seed(seed)
        self._model = self.build_architecture()
        self._loaded = False

    def weights_url(self) -> str:
        """Where s3tokenizer downloads the chosen model from."""
        return _import_s3tokenizer()._MODELS[self.params.model]

    def _load_pretrained(self) -> Any:
        s3 = _import_s3tokenizer()
        name = self.params.model
        if self.params.checkpoint:
            path = os.path.expanduser(self.params.checkpoint)
            if not os.path.isfile(path):
                raise WeightsNotFoundError(f"S3 checkpoint not found: {path}. Download {self.weights_url()} and set "
                                           "checkpoint to the path of the file")
            model = self.build_architecture()
            try:
                if path.endswith(".onnx"):
                    model.init_from_onnx(path)
                else:
                    model.init_from_pt(path)
            except Exception as exc:  # onnx parse errors and state-dict mismatches have many types
                first = (str(exc).splitlines() or [""])[0]
                raise MinecliError(f"cannot load {path} as {name}: {type(exc).__name__}: {first}. Check that the "
                                   f"file is {name} ({self.weights_url()})") from None
            return model
        root = os.path.expanduser(self.params.download_root or default_download_root())
        target = os.path.join(root, f"{name}.onnx")
        if os.path.isfile(target) or not self.offline():
            try:
                return s3.load_model(name, download_root=root)
            except Exception as exc:  # URLError, checksum mismatch, disk errors: all mean "get the file by hand"
                reason = f" (download failed: {type(exc).__name__}: {exc})".replace("\n", " ")
        else:
            reason = " (downloads are off: MINECLI_OFFLINE or HF_HUB_OFFLINE is set)"
        raise WeightsNotFoundError(f"S3 tokenizer weights not found: download {self.weights_url()} and save it as "
                                   f"{target}, or set checkpoint to its path{reason}")

    def load(self) -> None:
        if self._model is None:
            self._model = self._load_pretrained()
        model = self._model
        if getattr(model, "name", self.params.model) != self.params.model:
            raise MinecliError(f"the S3 model given was built as {model.name}, but params.model is "
                               f"{self.params.model}")
        model.eval()

    def extract_batch(self, waves: list["torch.Tensor"], sample_rate: int,
                      paths: list[str | None] | None = None) -> list["torch.Tensor"]:
        """Extract several utterances in one padded batch with their lengths."""
        import torch

        s3 = _import_s3tokenizer()
        self.ensure_loaded()
        self._check_rate(sample_rate)
        mels: list[torch.Tensor] = []
        keep: list[int] = []
        for i, wave in enumerate(waves):
            mono = wave.float().mean(dim=0) if wave.dim() == 2 else wave.float()
            # The STFT reflect-pads 200 samples; anything shorter than one window has no token.
            if mono.shape[-1] >= 400:
                mels.append(s3.log_mel_spectrogram(mono.to(self.device), n_mels=N_MELS))
                keep.append(i)
        out = [torch.zeros(0, 1, dtype=torch.long) for _ in waves]
        if not mels:
            return out
        feats, lengths = s3.padding(mels)
        with torch.inference_mode():
            codes, code_lens = self._model.quantize(feats.to(self.device), lengths.to(self.device))
        codes, code_lens = codes.cpu(), code_lens.cpu()  # the cache writes from the CPU
        for row, i in enumerate(keep):
            out[i] = codes[row, : int(code_lens[row])].long().reshape(-1, 1).clone()
        return out


@hookimpl
def register_extractors(register):
    register(S3Tokens)
