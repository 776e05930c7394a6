"""Reading a training checkpoint back, trusting nothing: a damaged file is named, never resumed from."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from .errors import MinecliError

#: keys of a ``last`` checkpoint's state.json that resuming reads
STATE_KEYS = ("step", "best_value", "best_step", "bad_validations", "stopped_early", "history", "param_groups")


class CheckpointError(MinecliError):
    """A checkpoint file is unreadable, truncated or holds values training cannot continue from."""


def read_state(folder: Path) -> dict[str, Any]:
    """The state.json of a ``last`` checkpoint, checked for the keys and finite numbers resuming needs."""
    path = folder / "state.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint file {path} is damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"checkpoint file {path} is damaged (not a JSON object)")
    missing = [k for k in STATE_KEYS if k not in doc]
    if missing:
        raise CheckpointError(f"checkpoint file {path} is damaged (missing {', '.join(missing)})")
    try:
        step, best = int(doc["step"]), float(doc["best_value"])
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint file {path} is damaged (step or best_value is not a number)") from None
    if step < 0 or not math.isfinite(best):
        raise CheckpointError(f"checkpoint file {path} is damaged (step {step}, best_value {best})")
    return doc


TENSOR_FILES = ("model.safetensors", "trainer.safetensors")


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of each tensor file of a checkpoint, stored in its state.json to catch damaged bytes."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in TENSOR_FILES}


def read_tensors(folder: Path, expected: dict[str, torch.Tensor],
                 doc: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The model and trainer tensors of a ``last`` checkpoint, checked against its digests and the model."""
    from safetensors.torch import load_file

    out = []
    sums = (doc or {}).get("sha256") or {}
    for name in TENSOR_FILES:
        path = folder / name
        # A flipped byte inside a tensor still parses; only the digest written beside it shows it.
        if name in sums and path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != sums[name]:
            raise CheckpointError(f"checkpoint file {path} is damaged (its contents do not match the digest in "
                                  f"{folder / 'state.json'})")
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"checkpoint file {path} is damaged or truncated ({reason})") from None
        for key, val in tensors.items():
            if val.is_floating_point() and not torch.isfinite(val).all():
                raise CheckpointError(f"checkpoint file {path} holds NaN or infinite values in {key}")
        out.append(tensors)
    model, trainer = out
    path = folder / "model.safetensors"
    if set(model) != set(expected):
        raise CheckpointError(f"checkpoint file {path} does not hold this critic's weights")
    for key, val in model.items():
        if val.shape != expected[key].shape:
            raise CheckpointError(f"checkpoint file {path} holds {key} of shape {tuple(val.shape)}, "
                                  f"not {tuple(expected[key].shape)}")
    for key in ("rng.torch", "rng.sampler"):
        if key not in trainer:
            raise CheckpointError(f"checkpoint file {folder / 'trainer.safetensors'} is damaged (no {key})")
    return model, trainer
