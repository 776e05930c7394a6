"""Precomputed features: per-utterance ``.npy`` files, e.g. from the original pipeline's scripts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from minecli import Extractor, MinecliError, StreamSpec, hookimpl, param


@dataclass(frozen=True)
class PrecomputedParams:
    kind: Literal["float", "index"] = param("float", help="float frames [T, dim] or token ids [T] / [T, n_codebooks]")
    dim: int | None = param(None, help="feature width of a float stream (required for float)")
    vocab_size: int | None = param(None, help="vocabulary size of an index stream (required for index)")
    n_codebooks: int = param(1, help="parallel codebooks of an index stream")
    frame_rate: float = param(100.0, help="frames per second of the stored features")
    dir: str | None = param(None, help="folder of <audio stem><suffix> files (not needed with CSV input)")
    suffix: str = param(".npy", help="file name ending of the feature files")
    transpose: bool = param(False, help="files are stored as [dim, T] and must be transposed")

    def __post_init__(self) -> None:
        if self.kind == "float" and not self.dim:
            raise ValueError("a float precomputed stream needs params.dim (the feature width)")
        if self.kind == "index" and not self.vocab_size:
            raise ValueError("an index precomputed stream needs params.vocab_size")


class Precomputed(Extractor):
    """Reads one ``.npy`` file per utterance, found by the audio file's stem in ``dir`` (or given by a CSV)."""

    name = "precomputed"
    summary = "per-utterance .npy feature files (float [T, dim] or token ids [T] / [T, C])"
    Params = PrecomputedParams
    needs_path = True
    reads_audio = False
    batch_size = 64

    def spec(self) -> StreamSpec:
        p = self.params
        if p.kind == "float":
            return StreamSpec("float", p.frame_rate, dim=p.dim)
        return StreamSpec("index", p.frame_rate, vocab_size=p.vocab_size, n_codebooks=p.n_codebooks)

    def feature_path(self, path: str) -> str:
        """The feature file for an audio path (or the path itself when it already is a feature file)."""
        # With params.dir set, the listed file only names the utterance: each side reads its own
        # folder, or a filelist of x's .npy files would silently feed x to y as well.
        if path.endswith(self.params.suffix) and self.params.dir is None:
            return path
        if self.params.dir is None:
            raise MinecliError(f"precomputed: set params.dir to the folder of {self.params.suffix} files for {path}")
        return str(Path(self.params.dir) / (Path(path).stem + self.params.suffix))

    def load_file(self, feature_path: str) -> Any:
        """Read one feature file as a tensor in the stream's layout."""
        import numpy as np
        import torch

        try:
            arr = np.load(feature_path, allow_pickle=False)
        except FileNotFoundError:
            raise MinecliError(f"precomputed: feature file not found: {feature_path}") from None
        except ValueError as exc:
            raise MinecliError(f"precomputed: cannot read {feature_path}: {exc}") from None
        if self.params.transpose:
            arr = arr.T
        if arr.ndim == 1:
            arr = arr[:, None]
        p = self.params
        width = p.dim if p.kind == "float" else p.n_codebooks
        if arr.ndim != 2 or arr.shape[1] != width:
            raise MinecliError(f"precomputed: {feature_path} has shape {arr.shape}, expected [T, {width}] "
                               f"(set params.{'dim' if p.kind == 'float' else 'n_codebooks'}, or transpose: true)")
        if p.kind == "index":
            if np.issubdtype(arr.dtype, np.floating):
                if not np.all(np.equal(np.mod(arr, 1), 0)):
                    raise MinecliError(f"precomputed: {feature_path} holds non-integer values but kind is 'index'")
            t = torch.from_numpy(arr.astype(np.int64))
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= p.vocab_size):
                raise MinecliError(f"precomputed: {feature_path} has ids in [{int(t.min())}, {int(t.max())}], outside "
                                   f"vocab_size {p.vocab_size}")
            return t
        out = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if not torch.isfinite(out).all():
            bad = int((~torch.isfinite(out)).any(dim=1).nonzero()[0, 0])
            raise MinecliError(f"precomputed: {feature_path} holds NaN or infinite values (first at frame {bad}); "
                               "fix or regenerate that file")
        return out

    def __call__(self, wave: Any, sample_rate: int, path: str | None = None) -> Any:
        if path is None:
            raise MinecliError("precomputed: needs the utterance path to find its feature file")
        return self.load_file(self.feature_path(path))


@hookimpl
def register_extractors(register):
    register(Precomputed)
