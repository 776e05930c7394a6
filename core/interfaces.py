"""The three plugin interfaces: extractors, encoder heads and estimators.

Plugin metadata are class attributes, so they can be listed without building anything; parameters
are a frozen dataclass (``Params``) checked against the config, unknown keys being errors.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from .params import NoParams, params_to_dict, parse_params
from .spec import StreamSpec

if TYPE_CHECKING:  # torch is heavy; the registry and the CLI listing never need it.
    import torch
    from torch import nn


class Plugin(ABC):
    """Common metadata of every registered item."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    #: bumped by a plugin when its output changes for the same params (invalidates caches)
    version: ClassVar[str] = "1"

    @classmethod
    def parse(cls, params: dict[str, Any] | None, where: str = "params") -> Any:
        """Check and convert a mapping of options into this plugin's Params."""
        return parse_params(cls.Params, params or {}, where)


class Extractor(Plugin):
    """Turns audio into a feature stream: float32 ``[T, dim]`` or int64 ``[T, n_codebooks]``.

    ``spec()`` must not load weights or import model libraries; ``load()`` does the heavy work and
    is called once before the first ``__call__``.

    Optional: an extractor built on pretrained weights may offer ``use_random_weights(seed)``, which
    puts the real architecture with random weights in place of the download, so the contract checks
    of ``minecli.testing`` and benchmarks run where the weights are not available.
    """

    #: how many frames the output may differ from ``duration * spec().frame_rate`` (models that pad
    #: their input or trim the edges declare more); checked by ``minecli.testing.check_extractor``
    frame_tolerance: ClassVar[float] = 1.0
    #: True when the extractor reads something other than the waveform (e.g. precomputed files)
    needs_path: ClassVar[bool] = False
    #: False when the extractor never looks at the waveform (the pipeline then skips reading audio)
    reads_audio: ClassVar[bool] = True
    #: how many utterances a good batch holds for ``extract_batch`` on the CPU (extraction.batch_size
    #: overrides it; on a GPU the pipeline uses at least 16)
    batch_size: ClassVar[int] = 1
    #: params that choose where or how fast the output is computed, never what it is (a device): the
    #: fingerprint holds them at the given values, so changing them keeps the cache
    runtime_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()
        self._loaded = False
        #: where ``load()``'s modules live and ``extract_batch`` computes; set through ``place``
        self.device: Any = "cpu"

    @abstractmethod
    def spec(self) -> StreamSpec:
        """The stream this extractor produces with its params; cheap, no weights."""

    def load(self) -> None:
        """Import model libraries and load weights; called once, lazily."""

    def ensure_loaded(self) -> None:
        """Call load() once, then move its modules to the device."""
        if not self._loaded:
            self.load()
            for module in self.modules():
                module.to(self.device)
            self._loaded = True

    def modules(self) -> list["nn.Module"]:
        """The torch modules ``load()`` built, which ``place`` moves to the device (default: none)."""
        return []

    def place(self, device: "torch.device | str") -> "Extractor":
        """Run on `device` from now on (modules already loaded move there); returns self."""
        self.device = device
        if self._loaded:
            for module in self.modules():
                module.to(device)
        return self

    @abstractmethod
    def __call__(self, wave: "torch.Tensor", sample_rate: int, path: str | None = None) -> "torch.Tensor":
        """Extract one utterance: wave is float32 ``[channels, samples]`` at ``spec().sample_rate``."""

    def extract_batch(self, waves: list["torch.Tensor"], sample_rate: int,
                      paths: list[str | None] | None = None) -> list["torch.Tensor"]:
        """Extract several utterances; override when the model batches with padding."""
        paths = paths or [None] * len(waves)
        return [self(w, sample_rate, path=p) for w, p in zip(waves, paths)]

    def _check_rate(self, sample_rate: int) -> None:
        """Raise a clear ValueError when audio does not arrive at ``spec().sample_rate``."""
        # Params are frozen, so the spec never changes; some specs read a config file to size the model.
        spec = getattr(self, "_rate_spec", None) or self.spec()
        self._rate_spec = spec
        expected = spec.sample_rate
        if expected is not None and sample_rate != expected:
            raise ValueError(f"{self.name} expects audio at {expected} Hz, got {sample_rate} Hz; resample first "
                             "(the pipeline does this from spec().sample_rate)")

    #: params that only choose part of what the extractor computes anyway (the first k codebooks, one
    #: codebook): the cache holds the output of ``full()`` once, and ``select`` cuts each choice from it
    #: at load, so sweeping them never re-extracts
    selection_params: ClassVar[tuple[str, ...]] = ()

    def full_params(self) -> Any:
        """Params of the whole output this extractor's selection is cut from: the selection params at
        their defaults (plugins override when their default is not 'everything', or when an output
        cannot be selected from)."""
        if not self.selection_params:
            return self.params
        import dataclasses

        defaults = {f.name: f.default for f in dataclasses.fields(self.params) if f.name in self.selection_params}
        return dataclasses.replace(self.params, **defaults)

    def full(self) -> "Extractor":
        """The extractor whose cached output holds this one's (itself when nothing is selected)."""
        params = self.full_params()
        if params == self.params:
            return self
        ext = type(self)(params)
        ext.device = self.device
        if getattr(self, "_model", None) is not None:  # a model given through from_model is shared
            ext._model = self._model  # type: ignore[attr-defined]
        return ext

    def select(self, features: "torch.Tensor") -> "torch.Tensor":
        """Cut this extractor's output from ``full()``'s output ``[T, full width]`` (default: all of it)."""
        return features

    def fingerprint(self) -> str:
        """A short hash of everything that determines the output: name, version and params."""
        params = params_to_dict(self.params)
        params.update({k: v for k, v in self.runtime_params.items() if k in params})
        blob = json.dumps({"name": self.name, "version": self.version, "params": params},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fit(self, train_paths: list[str], cache_dir: str) -> None:
        """Optional: learn something from the train split before extraction (e.g. a codebook)."""

    def input_files(self, path: str) -> list[str]:
        """Files besides the audio at `path` whose content the output depends on (e.g. a TextGrid).

        Their identities join the audio file's in the cache key, so editing one re-extracts that
        utterance. The default is none.
        """
        return []


class ModelExtractor(Extractor):
    """An extractor around a neural model that is built, and its weights loaded, on first use.

    ``load()`` builds ``self._model`` unless one was given through ``from_model`` (tests and
    benchmarks pass a model with random weights that way; the output is then the real model's).
    """

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._model: Any = None

    @classmethod
    def from_model(cls, model: Any, params: Any = None) -> "ModelExtractor":
        """An extractor around an already-built model (e.g. the same architecture with random weights)."""
        ext = cls(params)
        ext._model = model
        return ext

    @property
    def model(self) -> Any:
        """The underlying model, built and loaded on first access."""
        self.ensure_loaded()
        return self._model

    def modules(self) -> list["nn.Module"]:
        """The model, when it is a torch module (moved to the device after loading)."""
        from torch import nn

        return [self._model] if isinstance(self._model, nn.Module) else []

    @staticmethod
    def offline() -> bool:
        """True when downloads are off (MINECLI_OFFLINE or HF_HUB_OFFLINE): only local weights load."""
        import os

        return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
                   for v in ("MINECLI_OFFLINE", "HF_HUB_OFFLINE"))

    def __call__(self, wave: "torch.Tensor", sample_rate: int, path: str | None = None) -> "torch.Tensor":
        """Extract one utterance through ``extract_batch``, so single and batched paths are one code."""
        self.ensure_loaded()
        return self.extract_batch([wave], sample_rate, [path])[0]


class Head(Plugin):
    """Builds an encoder head ``[N, context, width] -> [N, out_dim]`` for one stream."""

    #: stream kinds this head accepts
    accepts: ClassVar[tuple[str, ...]] = ("float", "index")

    @abstractmethod
    def build(self, spec: StreamSpec, context: int, params: Any) -> "nn.Module":
        """Return an nn.Module with an ``out_dim`` attribute."""


class Estimator(Plugin):
    """Turns critic scores on joint and product-of-marginals pairs into a loss and a bound in nats.

    ``t_joint`` is ``[N]``; ``t_marg`` is ``[N, K]``: K scores of x_i against y's drawn from the
    marginal. ``loss`` may keep state between steps (e.g. MINE's moving average) in ``self.state``.
    """

    #: whether the value is a lower bound on I(X;Y) in expectation
    lower_bound: ClassVar[bool] = True
    #: whether ``bound`` reads the marginal scores only through their log-mean-exp over all pairs (DV, NWJ): a
    #: resample of frames may then pass each frame's log-mean-exp over its K scores, ``[N, 1]``, for ``t_marg``
    marginal_log_mean_exp: ClassVar[bool] = False

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()
        self.state: dict[str, float] = {}

    def ceiling_nats(self, n_negatives: int) -> float | None:
        """The largest value the bound can take with K negatives per positive, if finite."""
        return None

    @abstractmethod
    def loss(self, t_joint: "torch.Tensor", t_marg: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Return (loss to minimise, bound value in nats, detached) for one training batch."""

    @abstractmethod
    def bound(self, t_joint: "torch.Tensor", t_marg: "torch.Tensor") -> "torch.Tensor":
        """The bound in nats from scores (no gradient tricks); used for validation and test."""

    def state_dict(self) -> dict[str, float]:
        """Scalars to checkpoint."""
        return dict(self.state)

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore scalars from a checkpoint."""
        self.state = dict(state)
