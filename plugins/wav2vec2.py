"""Self-supervised speech models: wav2vec 2.0, HuBERT and WavLM hidden states, wav2vec 2.0 quantizer codes.

Two backends share one extractor. torchaudio bundles (``WAV2VEC2_BASE``, ``HUBERT_BASE``,
``WAVLM_BASE_PLUS``, ...) need nothing beyond minecli's own dependencies; Hugging Face models
(``facebook/wav2vec2-base``, ``microsoft/wavlm-base-plus``, ...) need transformers (``pip install -e '.[hf]'`` in a minecli checkout).
The quantizer codes exist only in pretraining checkpoints, which only the Hugging Face backend loads
(``Wav2Vec2ForPreTraining``); torchaudio's models drop the quantizer.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from minecli import Extractor, MinecliError, MissingDependencyError, StreamSpec, WeightsNotFoundError, hookimpl, param

SAMPLE_RATE = 16000
#: every model here downsamples 16 kHz audio by 320 (conv strides 5*2*2*2*2*2*2)
FRAME_RATE = 50.0
#: the convolutional front end's receptive field: shorter inputs give no frame at all
MIN_SAMPLES = 400
TORCHAUDIO_URL = "https://download.pytorch.org/torchaudio/models/{}"

# (width, transformer layers, input normalised in training) of torchaudio's bundles, kept here so
# spec() never imports torchaudio; tests check this table against torchaudio's own parameters.
TORCHAUDIO_BUNDLES: dict[str, tuple[int, int, bool]] = {
    "WAV2VEC2_BASE": (768, 12, False),
    "WAV2VEC2_LARGE": (1024, 24, False),
    "WAV2VEC2_LARGE_LV60K": (1024, 24, True),
    "WAV2VEC2_XLSR53": (1024, 24, True),
    "WAV2VEC2_XLSR_300M": (1024, 24, True),
    "WAV2VEC2_XLSR_1B": (1280, 48, True),
    "WAV2VEC2_XLSR_2B": (1920, 48, True),
    "WAV2VEC2_ASR_BASE_10M": (768, 12, False),
    "WAV2VEC2_ASR_BASE_100H": (768, 12, False),
    "WAV2VEC2_ASR_BASE_960H": (768, 12, False),
    "WAV2VEC2_ASR_LARGE_10M": (1024, 24, False),
    "WAV2VEC2_ASR_LARGE_100H": (1024, 24, False),
    "WAV2VEC2_ASR_LARGE_960H": (1024, 24, False),
    "WAV2VEC2_ASR_LARGE_LV60K_10M": (1024, 24, True),
    "WAV2VEC2_ASR_LARGE_LV60K_100H": (1024, 24, True),
    "WAV2VEC2_ASR_LARGE_LV60K_960H": (1024, 24, True),
    "HUBERT_BASE": (768, 12, False),
    "HUBERT_LARGE": (1024, 24, True),
    "HUBERT_XLARGE": (1280, 48, True),
    "HUBERT_ASR_LARGE": (1024, 24, True),
    "HUBERT_ASR_XLARGE": (1280, 48, True),
    "WAVLM_BASE": (768, 12, False),
    "WAVLM_BASE_PLUS": (768, 12, False),
    "WAVLM_LARGE": (1024, 24, True),
}

# Widths of common Hugging Face checkpoints, for spec() when no config.json is on disk yet.
HF_WIDTHS: dict[str, int] = {
    "facebook/wav2vec2-base": 768,
    "facebook/wav2vec2-base-960h": 768,
    "facebook/wav2vec2-large": 1024,
    "facebook/wav2vec2-large-960h": 1024,
    "facebook/wav2vec2-large-lv60": 1024,
    "facebook/wav2vec2-large-960h-lv60-self": 1024,
    "facebook/wav2vec2-large-xlsr-53": 1024,
    "facebook/wav2vec2-xls-r-300m": 1024,
    "facebook/wav2vec2-xls-r-1b": 1280,
    "facebook/hubert-base-ls960": 768,
    "facebook/hubert-large-ll60k": 1024,
    "facebook/hubert-xlarge-ll60k": 1280,
    "microsoft/wavlm-base": 768,
    "microsoft/wavlm-base-plus": 768,
    "microsoft/wavlm-large": 1024,
}

Output = Literal["hidden", "codes", "joint_code"]
Backend = Literal["auto", "torchaudio", "hf"]


@dataclass(frozen=True)
class Wav2Vec2Params:
    model: str = param("WAV2VEC2_BASE", help="a torchaudio bundle (WAV2VEC2_BASE, HUBERT_BASE, WAVLM_BASE_PLUS, ...) "
                       "or a Hugging Face model id (facebook/wav2vec2-base, microsoft/wavlm-base-plus, ...)")
    backend: Backend = param("auto", help="auto: a model name with '/' is a Hugging Face model, otherwise a "
                             "torchaudio bundle")
    output: Output = param("hidden", help="hidden: one layer's hidden states (float); codes: wav2vec 2.0 quantizer "
                           "indices, one column per group (index, [T, 2] x 320); joint_code: the groups combined into "
                           "one index (320*320); codes need a Hugging Face pretraining checkpoint")
    layer: int | Literal["all"] = param(-1, help="transformer layer whose output is the stream: 1..N, or counted "
                                        "from the end (-1 is the last); 'all': every layer side by side, "
                                        "[T, N x dim], layer 1 first")
    cache_all_layers: bool = param(False, help="cache every layer's hidden states once (N times the cache of one "
                                   "layer) and cut the chosen layer at load, so that changing layer never "
                                   "extracts again")
    checkpoint: str | None = param(None, help="local weights instead of a download: the bundle's .pth file for "
                                   "torchaudio, or a directory with config.json and the weights for Hugging Face")
    cache_dir: str | None = param(None, help="where downloads are cached (null: the library's default, "
                                  "$TORCH_HOME/hub/checkpoints or the Hugging Face cache)")
    dim: int | None = param(None, help="hidden width, needed only for a Hugging Face model minecli cannot size "
                            "from its name or a local config.json")
    normalize: bool | None = param(None, help="scale each utterance to zero mean and unit variance first; null "
                                   "follows the model's training recipe")
    device: str | None = param(None, help="torch device for this model only (cpu, cuda, cuda:N); null follows "
                               "extraction.device")

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError("model must name a torchaudio bundle or a Hugging Face model id")
        if self.cache_all_layers and self.output != "hidden":
            raise ValueError("cache_all_layers keeps hidden states; it does not apply to output "
                             f"{self.output!r}")
        if self.layer == "all":
            if self.output != "hidden":
                raise ValueError(f"layer 'all' gives hidden states; it does not apply to output {self.output!r}")
        elif self.layer == 0:
            raise ValueError("layer counts transformer layers from 1 (or from the end with -1, -2, ...); 0 is "
                             "not a layer")
        backend = self.resolved_backend
        if backend == "torchaudio" and self.model.upper() not in TORCHAUDIO_BUNDLES:
            names = ", ".join(sorted(TORCHAUDIO_BUNDLES))
            raise ValueError(f"unknown torchaudio bundle {self.model!r}; choose one of {names}, or give a Hugging "
                             "Face id such as facebook/wav2vec2-base")
        if backend == "torchaudio" and self.layer != "all" and self.layer > TORCHAUDIO_BUNDLES[self.model.upper()][1]:
            raise ValueError(f"{self.model} has {TORCHAUDIO_BUNDLES[self.model.upper()][1]} layers; layer "
                             f"{self.layer} does not exist")
        if self.output != "hidden" and backend != "hf":
            raise ValueError(f"output {self.output!r} needs the wav2vec 2.0 quantizer, which only Hugging Face "
                             "pretraining checkpoints keep: set model to e.g. facebook/wav2vec2-base")
        if self.dim is not None and self.dim <= 0:
            raise ValueError(f"dim must be a positive integer, not {self.dim}")

    @property
    def resolved_backend(self) -> str:
        """'torchaudio' or 'hf'."""
        if self.backend != "auto":
            return self.backend
        return "hf" if "/" in self.model or (self.checkpoint and os.path.isdir(self.checkpoint)) else "torchaudio"


def _hf_cached_config(p: Wav2Vec2Params) -> dict[str, Any] | None:
    """config.json of a Hugging Face model if it is already on disk (local dir or hub cache); no imports."""
    candidates = []
    if p.checkpoint:
        candidates.append(Path(p.checkpoint) / "config.json")
    hub = p.cache_dir or os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub")
    snapshots = Path(hub) / ("models--" + p.model.replace("/", "--")) / "snapshots"
    if snapshots.is_dir():
        candidates.extend(sorted(snapshots.glob("*/config.json")))
    for path in candidates:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None


def _normalise(x: Any, eps: float) -> Any:
    import torch

    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Wav2Vec2(Extractor):
    """Hidden states of one layer of wav2vec 2.0 / HuBERT / WavLM, or wav2vec 2.0 quantizer codes, at 50 Hz."""

    name = "wav2vec2"
    summary = "wav2vec 2.0 / HuBERT / WavLM layer features (768-d base) or quantizer codes (2 x 320), 50 Hz"
    Params = Wav2Vec2Params
    batch_size = 8
    # The device never changes the features: caches made with device: cpu (the old default) stay valid.
    runtime_params = {"device": "cpu"}

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        # A model placed here before the first call is used as is (tests pass random weights this way).
        self._model: Any = None
        self._backend = self.params.resolved_backend
        self._normalize = False
        self._padding_safe = False

    # ------------------------------------------------------------------ spec
    def _width(self) -> int:
        p = self.params
        if p.output != "hidden":
            return 0
        if p.dim is not None:
            return p.dim
        if self._backend == "torchaudio":
            return TORCHAUDIO_BUNDLES[p.model.upper()][0]
        if p.model in HF_WIDTHS:
            return HF_WIDTHS[p.model]
        config = _hf_cached_config(p)
        if config and isinstance(config.get("hidden_size"), int):
            return int(config["hidden_size"])
        raise ValueError(f"cannot tell the width of {p.model!r} without its config.json; set dim (e.g. 768 for a "
                         "base model, 1024 for a large one) or point checkpoint at a local copy")

    # Every layer comes out of one forward pass: with cache_all_layers, the cache holds all of them once
    # and a layer sweep cuts each from it (at N times the cache of one layer, hence opt-in).
    selection_params = ("layer",)

    def full_params(self) -> Wav2Vec2Params:
        """All layers when cache_all_layers is set; otherwise the extractor's own params."""
        from dataclasses import replace

        p = self.params
        return replace(p, layer="all") if p.cache_all_layers and p.output == "hidden" else p

    def select(self, features: Any) -> Any:
        """The chosen layer's columns of the all-layers stream."""
        p = self.params
        if p.layer == "all" or not p.cache_all_layers or p.output != "hidden":
            return features
        width = self._width()
        n = features.shape[1] // width
        k = p.layer if p.layer > 0 else n + 1 + p.layer
        if not 1 <= k <= n:
            raise MinecliError(f"wav2vec2: layer {p.layer} does not exist; the cached {p.model} has {n} layers")
        return features[:, (k - 1) * width: k * width]

    def _declared_layers(self) -> int:
        """Transformer layers of the model, known without loading it (layer 'all' sizes its stream by it)."""
        p = self.params
        if self._backend == "torchaudio":
            return TORCHAUDIO_BUNDLES[p.model.upper()][1]
        config = _hf_cached_config(p)
        if config and isinstance(config.get("num_hidden_layers"), int):
            return int(config["num_hidden_layers"])
        raise ValueError(f"cannot tell how many layers {p.model!r} has without its config.json; point checkpoint at "
                         "a local copy, or choose one layer")

    def spec(self) -> StreamSpec:
        """Float [T, dim] hidden states, or int64 codes, at 50 Hz from 16 kHz audio."""
        p = self.params
        if p.output == "hidden":
            layers = self._declared_layers() if p.layer == "all" else 1
            return StreamSpec("float", FRAME_RATE, dim=self._width() * layers, sample_rate=SAMPLE_RATE)
        config = _hf_cached_config(p) or {}
        groups = int(config.get("num_codevector_groups", 2))
        entries = int(config.get("num_codevectors_per_group", 320))
        if p.output == "codes":
            return StreamSpec("index", FRAME_RATE, vocab_size=entries, n_codebooks=groups, sample_rate=SAMPLE_RATE)
        return StreamSpec("index", FRAME_RATE, vocab_size=entries ** groups, n_codebooks=1, sample_rate=SAMPLE_RATE)

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Build the model and load its weights (download or local checkpoint)."""
        if self._backend == "torchaudio":
            self._load_torchaudio()
        else:
            self._load_hf()
        self._model.eval()
        self._check_model()

    def _load_torchaudio(self) -> None:
        from minecli.core.deps import load_torchaudio

        torchaudio = load_torchaudio()
        p = self.params
        key = p.model.upper()
        bundle = getattr(torchaudio.pipelines, key)
        self._normalize = TORCHAUDIO_BUNDLES[key][2] if p.normalize is None else p.normalize
        if self._model is None:
            self._model = self._build_torchaudio(bundle, key)
        # Group norm in the first conv layer spans the whole input, padding included, so only
        # layer-norm front ends give the same frames batched as one at a time.
        first = self._model.feature_extractor.conv_layers[0].layer_norm
        self._padding_safe = first is None or type(first).__name__ != "GroupNorm"

    def _build_torchaudio(self, bundle: Any, key: str) -> Any:
        import torch
        from torchaudio import models

        p = self.params
        filename = os.path.basename(bundle._path)
        url = bundle._path if bundle._path.startswith("https") else TORCHAUDIO_URL.format(bundle._path)
        hub_dir = p.cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
        target = p.checkpoint or os.path.join(hub_dir, filename)
        if p.checkpoint:
            if not os.path.isfile(p.checkpoint):
                raise WeightsNotFoundError(f"wav2vec2: checkpoint {p.checkpoint} not found; download {url} and "
                                           "set checkpoint to its path")
            state = torch.load(p.checkpoint, map_location="cpu", weights_only=True)
        else:
            try:
                state = torch.hub.load_state_dict_from_url(url, model_dir=hub_dir, map_location="cpu",
                                                           progress=False, file_name=filename, weights_only=True)
            except Exception as exc:  # urllib, HTTP and socket errors all mean: not downloadable here
                raise WeightsNotFoundError(
                    f"wav2vec2: cannot download the {key} weights ({_one_line(exc)}); fetch {url} and save it as "
                    f"{target}, or set checkpoint to a local copy") from None
        factory = models.wavlm_model if bundle._model_type == "WavLM" else models.wav2vec2_model
        model = factory(**bundle._params)
        if "aux.weight" in state and getattr(bundle, "_remove_aux_axis", None):
            # ASR bundles store a few unused output rows (fairseq's dictionary specials).
            keep = [i for i in range(state["aux.weight"].shape[0]) if i not in bundle._remove_aux_axis]
            state["aux.weight"], state["aux.bias"] = state["aux.weight"][keep], state["aux.bias"][keep]
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise MinecliError(f"wav2vec2: {target} does not hold {key} weights: {_one_line(exc)}") from None
        return model

    def use_random_weights(self, seed: int = 0) -> None:
        """Use the torchaudio bundle's architecture with random weights instead of a download (tests, benchmarks)."""
        import torch

        from minecli.core.deps import load_torchaudio

        torchaudio = load_torchaudio()
        models = torchaudio.models

        if self._backend != "torchaudio":
            raise MinecliError("wav2vec2: use_random_weights builds torchaudio bundles (e.g. model: WAV2VEC2_BASE); "
                               "for a Hugging Face model, assign a randomly initialised transformers model instead")
        bundle = getattr(torchaudio.pipelines, self.params.model.upper())
        factory = models.wavlm_model if bundle._model_type == "WavLM" else models.wav2vec2_model
        torch.manual_seed(seed)
        self._model = factory(**bundle._params)
        self._loaded = False

    def _load_hf(self) -> None:
        try:
            import transformers
        except ImportError:
            raise MissingDependencyError("transformers", "hf",
                                         f"wav2vec2 with the Hugging Face model {self.params.model!r}") from None
        p = self.params
        source = p.checkpoint or p.model
        if self._model is None:
            if p.checkpoint and not os.path.isdir(p.checkpoint):
                raise WeightsNotFoundError(f"wav2vec2: checkpoint directory {p.checkpoint} not found; download "
                                           f"https://huggingface.co/{p.model} (config.json and model.safetensors) "
                                           "into it")
            cls = transformers.Wav2Vec2ForPreTraining if p.output != "hidden" else transformers.AutoModel
            try:
                self._model = cls.from_pretrained(source, cache_dir=p.cache_dir)
            except OSError as exc:
                where = p.cache_dir or "the Hugging Face cache (~/.cache/huggingface/hub)"
                raise WeightsNotFoundError(
                    f"wav2vec2: cannot load {source} ({_one_line(exc)[:120]}); download https://huggingface.co/"
                    f"{p.model} (config.json and model.safetensors) into {where} with 'hf download {p.model}', "
                    "or set checkpoint to a local directory holding them") from None
        config = self._model.config
        if p.normalize is not None:
            self._normalize = p.normalize
        else:
            self._normalize = self._hf_do_normalize(source, config)
        # Hugging Face masks padding only for layer-norm front ends (return_attention_mask).
        self._padding_safe = getattr(config, "feat_extract_norm", "group") == "layer"

    def _hf_do_normalize(self, source: str, config: Any) -> bool:
        try:
            from transformers import AutoFeatureExtractor

            return bool(AutoFeatureExtractor.from_pretrained(source, cache_dir=self.params.cache_dir).do_normalize)
        except Exception:  # no preprocessor_config.json: fall back to the rule the library itself uses
            return getattr(config, "feat_extract_norm", "group") == "layer"

    def modules(self) -> list[Any]:
        """The model, moved to the device after loading."""
        return [self._model] if self._model is not None else []

    def _core(self) -> Any:
        """The encoder without task heads (Hugging Face pretraining models wrap it)."""
        model = self._model
        return getattr(model, "wav2vec2", model) if self._backend == "hf" else model

    def _n_layers(self) -> int:
        if self._backend == "torchaudio":
            return len(self._model.encoder.transformer.layers)
        return int(self._model.config.num_hidden_layers)

    def _check_model(self) -> None:
        p = self.params
        n = self._n_layers()
        if p.layer == "all" and n != self._declared_layers():
            raise MinecliError(f"wav2vec2: {p.model} has {n} transformer layers, not the {self._declared_layers()} "
                               "its name declares; layer 'all' needs the real model")
        if p.layer != "all" and not (1 <= p.layer <= n or -n <= p.layer <= -1):
            raise MinecliError(f"wav2vec2: layer {p.layer} does not exist; {p.model} has {n} transformer layers "
                               f"(use 1..{n} or -1..-{n})")
        if p.output == "hidden":
            if self._backend == "torchaudio":
                width = self._model.encoder.feature_projection.projection.out_features
            else:
                width = int(self._model.config.hidden_size)
            if width != self._width():
                raise MinecliError(f"wav2vec2: {p.model} has {width}-d hidden states but the stream was declared "
                                   f"{self._width()}-d; set dim: {width}")
        else:
            quantizer = getattr(self._model, "quantizer", None)
            if quantizer is None:
                raise MinecliError(f"wav2vec2: {p.model} has no quantizer (only wav2vec 2.0 pretraining "
                                   "checkpoints do, e.g. facebook/wav2vec2-base); use output: hidden")
            cfg = self._model.config
            spec = self.spec()
            want = (cfg.num_codevectors_per_group if p.output == "codes"
                    else cfg.num_codevectors_per_group ** cfg.num_codevector_groups)
            if want != spec.vocab_size:
                raise MinecliError(f"wav2vec2: {p.model}'s quantizer has {cfg.num_codevector_groups} x "
                                   f"{cfg.num_codevectors_per_group} entries, not the {spec.vocab_size} declared")

    # ------------------------------------------------------------------ extraction
    def _layer_number(self) -> int:
        n = self._n_layers()
        if self.params.layer == "all":
            return n
        return self.params.layer if self.params.layer > 0 else n + 1 + self.params.layer

    def _forward(self, x: Any, lengths: Any | None) -> tuple[Any, Any | None]:
        """[B, samples] -> ([B, T, width], frame lengths or None)."""
        import torch

        p = self.params
        k = self._layer_number()
        if self._backend == "torchaudio":
            feats, out_lengths = self._model.extract_features(x, lengths, num_layers=k)
            return (torch.cat(feats, dim=-1) if p.layer == "all" else feats[-1]), out_lengths
        core = self._core()
        mask = None
        if lengths is not None:
            mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).long()
        out_lengths = None
        if lengths is not None:
            out_lengths = core._get_feat_extract_output_lengths(lengths)
        if p.output == "hidden":
            out = core(x, attention_mask=mask, output_hidden_states=True)
            if p.layer == "all":
                return torch.cat(out.hidden_states[1:], dim=-1), out_lengths
            return out.hidden_states[k], out_lengths
        # The quantizer picks, per group, the codevector with the largest logit (its eval-mode path).
        features = core.feature_extractor(x).transpose(1, 2)
        _, normed = core.feature_projection(features)
        cfg = self._model.config
        logits = self._model.quantizer.weight_proj(normed)
        idx = logits.view(*logits.shape[:2], cfg.num_codevector_groups, cfg.num_codevectors_per_group).argmax(-1)
        if p.output == "joint_code":
            base = torch.tensor([cfg.num_codevectors_per_group ** (cfg.num_codevector_groups - 1 - g)
                                 for g in range(cfg.num_codevector_groups)], device=idx.device)
            idx = (idx * base).sum(-1, keepdim=True)
        return idx, out_lengths

    def _prepare(self, wave: Any) -> Any:
        import torch

        x = wave.to(torch.float32)
        if x.dim() == 2:
            x = x.mean(dim=0)
        if self._normalize:
            x = _normalise(x, 1e-5 if self._backend == "torchaudio" else 1e-7)
        return x

    def _finish(self, y: Any) -> Any:
        import torch

        y = y.detach().cpu()
        return y.to(torch.int64).contiguous() if self.params.output != "hidden" else y.to(torch.float32).contiguous()

    def _empty(self) -> Any:
        import torch

        spec = self.spec()
        if spec.kind == "float":
            return torch.zeros(0, spec.dim, dtype=torch.float32)
        return torch.zeros(0, spec.n_codebooks, dtype=torch.int64)

    def __call__(self, wave: Any, sample_rate: int, path: str | None = None) -> Any:
        """One utterance ``[channels, samples]`` at 16 kHz -> ``[T, dim]`` float32 or ``[T, groups]`` int64."""
        import torch

        self._check_rate(sample_rate)
        self.ensure_loaded()
        x = self._prepare(wave)
        if x.shape[-1] < MIN_SAMPLES:
            return self._empty()
        with torch.inference_mode():
            y, _ = self._forward(x[None].to(self.device), None)
        return self._finish(y[0])

    def extract_batch(self, waves: list[Any], sample_rate: int,
                      paths: list[str | None] | None = None) -> list[Any]:
        """Pad and batch where the model masks padding exactly; otherwise one utterance at a time."""
        import torch

        self._check_rate(sample_rate)
        self.ensure_loaded()
        if not self._padding_safe or len(waves) < 2:
            return [self(w, sample_rate) for w in waves]
        xs = [self._prepare(w) for w in waves]
        out: list[Any] = [None] * len(xs)
        keep = [i for i, x in enumerate(xs) if x.shape[-1] >= MIN_SAMPLES]
        for i, x in enumerate(xs):
            if x.shape[-1] < MIN_SAMPLES:
                out[i] = self._empty()
        if not keep:
            return out
        from minecli.core.batching import pad_batch

        batch, lengths = pad_batch([xs[i] for i in keep], device=self.device)
        with torch.inference_mode():
            # Padding is masked (attention mask, output lengths), so each row matches its utterance
            # alone up to float rounding of the batched matmuls (1e-4 relative in the tests).
            y, frames = self._forward(batch[:, 0], lengths.to(self.device))
        for row, i in enumerate(keep):
            out[i] = self._finish(y[row, : int(frames[row])])
        return out


@hookimpl
def register_extractors(register):
    register(Wav2Vec2)
