"""The feature cache: each (extractor, params, audio file) is extracted once, in safetensors shards.

Layout: ``<cache_dir>/<extractor>-<fingerprint>/shard-*.safetensors``. A shard holds many utterances,
each under the key of its audio file's identity (absolute path, size, modification time). Shards are
written atomically every few utterances, so an interrupted extraction resumes where it stopped.

Several processes may fill one cache at once (job-array shards, torchrun ranks, on a shared
filesystem): each writes shards of its own under a unique name, by rename, so a reader sees whole
shards or none, and the index is the union of whatever shards exist when it is read.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import MinecliError
from .interfaces import Extractor
from .io import atomic_write, write_error, write_json
from .params import params_to_dict


def file_key(path: str | os.PathLike[str]) -> str:
    """Identity of an input file: a hash of its absolute path, size and modification time."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MinecliError(f"file not found: {path}") from None
    blob = f"{p}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha1(blob.encode()).hexdigest()


class FeatureStore:
    """The cached features of one extractor configuration."""

    def __init__(self, cache_dir: str | os.PathLike[str], extractor: Extractor) -> None:
        self.extractor = extractor
        self.dir = Path(cache_dir) / f"{extractor.name}-{extractor.fingerprint()}"
        self._index: dict[str, Path] | None = None

    def index(self) -> dict[str, Path]:
        """Map of utterance key -> shard file, read from the shards' headers."""
        if self._index is None:
            idx: dict[str, Path] = {}
            if self.dir.exists():
                for shard in sorted(self.dir.glob("shard-*.safetensors")):
                    try:
                        with safe_open(str(shard), framework="pt") as fh:
                            for key in fh.keys():
                                idx[key] = shard
                    except Exception:  # noqa: BLE001 - a damaged shard is re-extracted, never trusted
                        print(f"minecli: warning: ignoring unreadable cache shard {shard}", file=sys.stderr)
            self._index = idx
        return self._index

    def missing(self, keys: Sequence[str]) -> list[int]:
        """Positions of keys not yet in the cache."""
        idx = self.index()
        return [i for i, k in enumerate(keys) if k not in idx]

    def _write_shard(self, items: dict[str, torch.Tensor]) -> None:
        if not items:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.dir, exc) from None
        meta_path = self.dir / "extractor.json"
        if not meta_path.exists():
            write_json(meta_path, {"name": self.extractor.name, "version": self.extractor.version,
                                   "params": params_to_dict(self.extractor.params),
                                   "spec": self.extractor.spec().to_dict()})
        shard = self.dir / f"shard-{int(time.time())}-{uuid.uuid4().hex[:8]}.safetensors"
        tensors = {k: v.contiguous() for k, v in items.items()}
        atomic_write(shard, lambda tmp: save_file(tensors, tmp))
        assert self._index is not None
        for k in items:
            self._index[k] = shard

    def extract(self, paths: Sequence[str], keys: Sequence[str], load_wave: Callable[[str], np.ndarray] | None,
                desc: str, progress: bool = True, flush_every: int = 64, flush_seconds: float = 60.0,
                skipped: list[str] | None = None, batch_size: int | None = None,
                max_batch_samples: int | None = None) -> int:
        """Extract every path whose key is missing; returns how many were extracted.

        Files are read a window at a time and their utterances batched by length (at most
        `batch_size`, default the extractor's, and `max_batch_samples` of padded audio per batch).
        With a `skipped` list, an audio file that cannot be read is appended to it and left out
        instead of stopping the extraction.
        """
        from .batching import length_buckets

        todo = self.missing(keys)
        if not todo:
            return 0
        ext = self.extractor
        spec = ext.spec()
        ext.ensure_loaded()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=desc, unit="file", file=sys.stderr, dynamic_ncols=True, leave=False, disable=None)
        pending: dict[str, torch.Tensor] = {}
        n_skipped = 0
        last_flush = time.monotonic()
        batch = max(1, int(batch_size or getattr(ext, "batch_size", 1)))
        # Sorting by length within a window of files keeps padding small without reading every file first.
        window = max(flush_every, 4 * batch)
        try:
            for s in range(0, len(todo), window):
                chunk = todo[s:s + window]
                chunk_paths = [paths[i] for i in chunk]
                if load_wave is not None:
                    waves, readable = [], []
                    for i, p in zip(chunk, chunk_paths):
                        try:
                            waves.append(torch.from_numpy(load_wave(p)))
                        except MinecliError as exc:
                            if skipped is None:
                                raise
                            print(f"minecli: warning: skipping {p}: {exc}", file=sys.stderr)
                            skipped.append(p)
                            n_skipped += 1
                            continue
                        readable.append(i)
                    if bar is not None:
                        bar.update(len(chunk) - len(readable))
                    chunk = readable
                    if not chunk:
                        continue
                else:
                    waves = [torch.zeros(spec.channels, 0) for _ in chunk]
                for bucket in length_buckets([w.shape[-1] for w in waves], batch, max_batch_samples):
                    members = [chunk[j] for j in bucket]
                    outs = self._run(ext, [waves[j] for j in bucket], spec, [paths[i] for i in members])
                    for i, out in zip(members, outs):
                        pending[keys[i]] = _check_output(out, spec, ext.name, paths[i])
                    if bar is not None:
                        bar.update(len(members))
                    if len(pending) >= flush_every or time.monotonic() - last_flush > flush_seconds:
                        self._write_shard(pending)
                        pending = {}
                        last_flush = time.monotonic()
        finally:
            # Whatever was extracted before an interruption is kept.
            self._write_shard(pending)
            if bar is not None:
                bar.close()
        return len(todo) - n_skipped

    @staticmethod
    def _run(ext: Extractor, waves: list[torch.Tensor], spec: Any, names: list[str]) -> list[Any]:
        """One extract_batch call, its failures turned into one-line errors naming the files."""
        try:
            outs = ext.extract_batch(waves, spec.sample_rate or 0, list(names))
        except MinecliError:
            raise
        except SystemExit as exc:
            raise MinecliError(f"extractor '{ext.name}' called sys.exit({exc.code!r}) on {names[0]}; "
                               "report this to the plugin's authors") from None
        except Exception as exc:
            raise MinecliError(f"extractor '{ext.name}' failed on {', '.join(names[:3])}: "
                               f"{type(exc).__name__}: {exc}") from exc
        if len(outs) != len(waves):
            raise MinecliError(f"extractor '{ext.name}' returned {len(outs)} outputs for {len(waves)} utterances "
                               f"({', '.join(names[:3])}); extract_batch must return one per utterance")
        return list(outs)

    def load(self, keys: Sequence[str]) -> list[torch.Tensor]:
        """The cached tensors for keys (all must be present)."""
        idx = self.index()
        by_shard: dict[Path, list[int]] = {}
        for i, k in enumerate(keys):
            if k not in idx:
                raise MinecliError(f"feature cache {self.dir} lacks an entry; run 'minecli extract' again")
            by_shard.setdefault(idx[k], []).append(i)
        out: list[torch.Tensor | None] = [None] * len(keys)
        for shard, positions in by_shard.items():
            with safe_open(str(shard), framework="pt") as fh:
                for i in positions:
                    out[i] = fh.get_tensor(keys[i])
        return out  # type: ignore[return-value]


def _check_output(out: Any, spec: Any, name: str, path: str) -> torch.Tensor:
    """Validate an extractor's output against its StreamSpec, naming the file on failure."""
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(np.asarray(out))
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2 or out.shape[1] != spec.width:
        raise MinecliError(f"extractor '{name}' returned shape {tuple(out.shape)} for {path}, but its stream "
                           f"spec says [T, {spec.width}]")
    if spec.kind == "index":
        if out.dtype.is_floating_point:
            raise MinecliError(f"extractor '{name}' returned {out.dtype} for {path}; an index stream must be integer")
        out = out.to(torch.int64)
        if out.numel() and (int(out.min()) < 0 or int(out.max()) >= spec.vocab_size):
            raise MinecliError(f"extractor '{name}' returned token ids outside [0, {spec.vocab_size}) for {path}")
    else:
        out = out.to(torch.float32)
        if not torch.isfinite(out).all():
            raise MinecliError(f"extractor '{name}' returned NaN or infinite values for {path}")
    return out.cpu()


__all__ = ["FeatureStore", "file_key"]
