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
    n_codebooks: int = param(1, help="parallel codebooks of an index stream: the first k columns of the files")
    codebook: int | None = param(None, help="one column (0-based) of the files instead of the first n_codebooks")
    file_codebooks: int | None = param(None, help="columns of the index files when they hold more than the "
                                                  "codebooks used (default: n_codebooks); the files are cached "
                                                  "once and each selection is cut from them")
    frame_rate: float = param(100.0, help="frames per second of the stored features")
    dir: str | None = param(None, help="folder of <audio stem><suffix> files (not needed with CSV input)")
    suffix: str = param(".npy", help="file name ending of the feature files")
    transpose: bool = param(False, help="files are stored as [dim, T] and must be transposed")

    def __post_init__(self) -> None:
        if self.kind == "float" and not self.dim:
            raise ValueError("a float precomputed stream needs params.dim (the feature width)")
        if self.kind == "index" and not self.vocab_size:
            raise ValueError("an index precomputed stream needs params.vocab_size")
        if self.kind == "float" and (self.codebook is not None or self.file_codebooks is not None):
            raise ValueError("codebook and file_codebooks select columns of index files; a float stream uses dim")
        if self.n_codebooks < 1:
            raise ValueError(f"n_codebooks must be at least 1, not {self.n_codebooks}")
        stored = self.file_codebooks if self.file_codebooks is not None else self.n_codebooks
        if self.file_codebooks is not None and not self.n_codebooks <= self.file_codebooks:
            raise ValueError(f"n_codebooks {self.n_codebooks} is more than the file_codebooks {self.file_codebooks} "
                             "columns of the files")
        if self.codebook is not None and not 0 <= self.codebook < stored:
            raise ValueError(f"codebook must be between 0 and {stored - 1} (the files' columns; set "
                             f"file_codebooks), not {self.codebook}")

    @property
    def selected(self) -> list[int]:
        """Columns of the files that make up the stream."""
        return [self.codebook] if self.codebook is not None else list(range(self.n_codebooks))

    @property
    def stored(self) -> int:
        """Columns of the index files."""
        return self.file_codebooks if self.file_codebooks is not None else self.n_codebooks


class Precomputed(Extractor):
    """Reads one ``.npy`` file per utterance, found by the audio file's stem in ``dir`` (or given by a CSV)."""

    name = "precomputed"
    summary = "per-utterance .npy feature files (float [T, dim] or token ids [T] / [T, C])"
    Params = PrecomputedParams
    needs_path = True
    reads_audio = False
    batch_size = 64

    selection_params = ("n_codebooks", "codebook")

    def full_params(self) -> PrecomputedParams:
        """Every column of the index files; the stream's columns are cut from them at load."""
        from dataclasses import replace

        p = self.params
        if p.kind != "index":
            return p
        # file_codebooks is dropped so that every way of asking for all the columns is one cache entry
        return replace(p, n_codebooks=p.stored, codebook=None, file_codebooks=None)

    def select(self, features: Any) -> Any:
        """The selected columns of the full stream."""
        return features[:, self.params.selected] if self.params.kind == "index" else features

    def spec(self) -> StreamSpec:
        p = self.params
        if p.kind == "float":
            return StreamSpec("float", p.frame_rate, dim=p.dim)
        return StreamSpec("index", p.frame_rate, vocab_size=p.vocab_size, n_codebooks=len(p.selected))

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
        width = p.dim if p.kind == "float" else p.stored
        if arr.ndim != 2 or arr.shape[1] != width:
            key = "dim" if p.kind == "float" else "file_codebooks (or n_codebooks)"
            raise MinecliError(f"precomputed: {feature_path} has shape {arr.shape}, expected [T, {width}] "
                               f"(set params.{key} to the files' width, or transpose: true)")
        if p.kind == "index" and p.selected != list(range(width)):
            arr = arr[:, p.selected]
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
