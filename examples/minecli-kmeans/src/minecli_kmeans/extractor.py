"""The ``kmeans`` extractor: index tokens from k-means over another extractor's float frames."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minecli import ConfigError, Extractor, MinecliError, StreamSpec, make_extractor, param

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class KMeansParams:
    base: str = param("mel", help="registry name of the float stream to tokenize (mel, wav2vec2, complex_spec, ...)")
    base_params: dict[str, Any] = param({}, help="params of the base extractor, written as under x.params")
    n_clusters: int = param(100, help="codebook size: the vocabulary of the token stream")
    max_train_frames: int = param(100000, help="at most this many train frames are clustered (a seeded random "
                                  "subset, an equal share from each train file)")
    seed: int = param(0, help="seed of the frame subset and of the k-means++ seeding")
    iters: int = param(20, help="Lloyd iterations after k-means++ seeding (fewer when it converges)")

    def __post_init__(self) -> None:
        if self.base == "kmeans":
            raise ValueError("base must be a float extractor such as mel or wav2vec2, not kmeans itself")
        if self.n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, not {self.n_clusters}")
        if self.max_train_frames < self.n_clusters:
            raise ValueError(f"max_train_frames ({self.max_train_frames}) must be at least n_clusters "
                             f"({self.n_clusters})")
        if self.iters < 0:
            raise ValueError(f"iters must be 0 or more, not {self.iters}")


def _file_identity(path: str) -> str:
    """A train file's identity: absolute path, size and modification time (as minecli's feature cache keys it)."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha1(f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()


class KMeansTokens(Extractor):
    """HuBERT-style units: each frame of a float stream replaced by the index of its nearest centroid.

    The codebook is fitted on the train split (``fit``, which ``minecli run`` calls before extraction),
    saved under the cache folder and found again on later runs; the fingerprint includes it, so a
    different train split or base stream never reuses cached tokens.
    """

    name = "kmeans"
    summary = "k-means units of any float stream (codebook fitted on the train split), n_clusters ids"
    Params = KMeansParams
    version = "1"

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._base: Extractor | None = None
        self._codebook: torch.Tensor | None = None
        self._codebook_id: str | None = None
        #: where the codebook in use was read from or written to
        self.codebook_path: str | None = None

    # ------------------------------------------------------------------ the base stream
    @property
    def base(self) -> Extractor:
        """The extractor whose frames are clustered (built on first use, no weights)."""
        if self._base is None:
            self._base = make_extractor(self.params.base, self.params.base_params, where="params.base_params")
        return self._base

    # How the pipeline feeds this extractor is how it feeds the base.
    @property
    def reads_audio(self) -> bool:  # type: ignore[override]
        """Whether the pipeline reads audio for it: as for the base extractor."""
        return bool(getattr(self.base, "reads_audio", True))

    @property
    def needs_path(self) -> bool:  # type: ignore[override]
        """Whether it reads files beside the audio: as for the base extractor."""
        return bool(getattr(self.base, "needs_path", False))

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        """Utterances per extract_batch call: the base extractor's."""
        return int(getattr(self.base, "batch_size", 1))

    @property
    def frame_tolerance(self) -> float:  # type: ignore[override]
        """Frames the output may differ from duration x frame_rate: the base extractor's."""
        return float(getattr(self.base, "frame_tolerance", 1.0))

    def spec(self) -> StreamSpec:
        """int64 ``[T, 1]`` with n_clusters ids, at the base stream's frame rate and audio rate."""
        base = self.base.spec()
        if base.kind != "float":
            raise ConfigError(f"params.base: kmeans clusters float frames, but '{self.params.base}' gives an index "
                              f"stream ({base.describe()}); choose a float extractor such as mel or wav2vec2")
        return StreamSpec("index", base.frame_rate, vocab_size=self.params.n_clusters, n_codebooks=1,
                          sample_rate=base.sample_rate, channels=base.channels)

    # ------------------------------------------------------------------ the codebook
    def codebook_key(self, train_paths: list[str]) -> str:
        """Hash of what determines the codebook: base fingerprint, k-means params and the train files."""
        base = self.base
        feature_path = getattr(base, "feature_path", None)
        files = sorted(_file_identity(feature_path(p) if callable(feature_path) else p) for p in train_paths)
        p = self.params
        doc = {"version": self.version, "base": p.base, "base_fingerprint": base.fingerprint(),
               "n_clusters": p.n_clusters, "max_train_frames": p.max_train_frames, "seed": p.seed, "iters": p.iters,
               "train": files}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def fit(self, train_paths: list[str], cache_dir: str) -> None:
        """Fit the codebook on the train split, or load the one an earlier run saved for the same inputs."""
        if not train_paths:
            raise MinecliError("kmeans: the train split is empty; the codebook is fitted on it")
        self.base.fit(train_paths, cache_dir)
        path = Path(cache_dir) / "kmeans" / f"codebook-{self.codebook_key(train_paths)}.safetensors"
        if path.is_file():
            self.load_codebook(str(path))
            return
        centroids, mse, n_frames = self._train(train_paths)
        self._save(path, centroids, {"base": self.params.base, "base_params": json.dumps(self.params.base_params),
                                     "train_files": str(len(train_paths)), "train_frames": str(n_frames),
                                     "mse": repr(mse)})
        self._use(centroids, str(path))

    def _train(self, train_paths: list[str]) -> tuple[Any, float, int]:
        import torch
        from minecli.core.audio import load_for

        from .kmeans import fit_kmeans

        p = self.params
        base = self.base
        spec = base.spec()
        base.ensure_loaded()
        gen = torch.Generator().manual_seed(p.seed)
        # An equal share per file keeps memory near max_train_frames however large the split is.
        share = max(1, -(-2 * p.max_train_frames // len(train_paths)))
        chunks = []
        for path in sorted(train_paths):
            if base.reads_audio:
                wave = torch.from_numpy(load_for(path, spec.sample_rate, spec.channels))
            else:
                wave = torch.zeros(spec.channels, 0)
            feats = base(wave, spec.sample_rate or 0, path=path).to(torch.float32).reshape(-1, spec.width)
            if feats.shape[0] > share:
                feats = feats[torch.randperm(feats.shape[0], generator=gen)[:share]]
            chunks.append(feats)
        x = torch.cat(chunks)
        if x.shape[0] > p.max_train_frames:
            x = x[torch.randperm(x.shape[0], generator=gen)[: p.max_train_frames]]
        if x.shape[0] < p.n_clusters:
            raise MinecliError(f"kmeans: the train split gave {x.shape[0]} frames of '{p.base}', fewer than "
                               f"n_clusters={p.n_clusters}; lower n_clusters or add train files")
        print(f"minecli-kmeans: fitting {p.n_clusters} clusters on {x.shape[0]} frames of {p.base} "
              f"({len(train_paths)} train files)", file=sys.stderr)
        centroids, mse = fit_kmeans(x, p.n_clusters, p.iters, p.seed)
        return centroids, mse, int(x.shape[0])

    def _save(self, path: Path, centroids: Any, metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # Written beside the target and renamed, so an interrupted run never leaves half a codebook.
        save_file({"centroids": centroids.contiguous()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)

    def load_codebook(self, path: str) -> None:
        """Use a codebook saved by an earlier fit (a safetensors file with a ``centroids`` [n_clusters, dim] tensor)."""
        from safetensors.torch import load_file

        try:
            centroids = load_file(path)["centroids"]
        except Exception as exc:  # missing key, truncated file and bad header all mean: not a codebook
            raise MinecliError(f"kmeans: cannot read codebook {path}: {type(exc).__name__}: {exc}") from None
        want = (self.params.n_clusters, self.base.spec().width)
        if tuple(centroids.shape) != want:
            raise MinecliError(f"kmeans: codebook {path} has shape {tuple(centroids.shape)}, expected {want} "
                               "(n_clusters x the base stream's dim)")
        self._use(centroids.float(), path)

    def _use(self, centroids: Any, path: str) -> None:
        self._codebook = centroids.contiguous()
        self._codebook_id = hashlib.sha256(self._codebook.numpy().tobytes()).hexdigest()[:16]
        self.codebook_path = path

    @property
    def codebook(self) -> "torch.Tensor":
        """The centroids ``[n_clusters, dim]`` in use."""
        self.ensure_loaded()
        assert self._codebook is not None
        return self._codebook

    def fingerprint(self) -> str:
        """Params, the base stream's own fingerprint and the codebook's contents: the cache key."""
        codebook = self._codebook_id or "unfitted"
        blob = f"{super().fingerprint()}:{self.base.fingerprint()}:{codebook}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ extraction
    def load(self) -> None:
        """Check there is a codebook and load the base extractor."""
        if self._codebook is None:
            raise MinecliError("kmeans: no codebook yet; 'minecli run' and 'minecli extract' fit it on the train "
                               "split. In Python, call fit(train_paths, cache_dir) or load_codebook(path) first")
        self.base.ensure_loaded()

    def quantize(self, feats: "torch.Tensor") -> "torch.Tensor":
        """Float frames ``[T, dim]`` -> nearest-centroid ids ``[T, 1]`` int64."""
        import torch

        from .kmeans import assign

        codebook = self.codebook
        feats = feats.to(torch.float32)
        if feats.dim() != 2 or feats.shape[1] != codebook.shape[1]:
            raise MinecliError(f"kmeans: the base stream gave frames of shape {tuple(feats.shape)}, but the codebook "
                               f"has dim {codebook.shape[1]}")
        if feats.shape[0] == 0:
            return torch.zeros(0, 1, dtype=torch.long)
        # float64 as in training, so a frame gets the centroid it was assigned during the fit
        idx, _ = assign(feats.to(torch.float64), codebook.to(torch.float64))
        return idx.view(-1, 1)

    def __call__(self, wave: "torch.Tensor", sample_rate: int, path: str | None = None) -> "torch.Tensor":
        """One utterance -> int64 ``[T, 1]`` (the base extractor checks the audio rate)."""
        self.ensure_loaded()
        return self.quantize(self.base(wave, sample_rate, path=path))

    def extract_batch(self, waves: list["torch.Tensor"], sample_rate: int,
                      paths: list[str | None] | None = None) -> list["torch.Tensor"]:
        """Several utterances, batched the way the base extractor batches them."""
        self.ensure_loaded()
        return [self.quantize(f) for f in self.base.extract_batch(waves, sample_rate, paths)]
