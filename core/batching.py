"""Batched extraction: utterances grouped by length, zero-padded into one tensor and cut back apart."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def length_buckets(lengths: Sequence[int], batch_size: int, max_samples: int | None = None) -> list[list[int]]:
    """Positions grouped into batches of similar length: longest first, at most `batch_size` each and at
    most `max_samples` of padded audio (``len(batch) * longest``); a longer utterance goes alone.
    With a batch size of 1 the order is kept."""
    batch_size = max(1, int(batch_size))
    if batch_size == 1:  # nothing to pad: keep the given order
        return [[i] for i in range(len(lengths))]
    # Sorting longest first lets each batch's first member fix the padded length of the whole batch.
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = int(lengths[i])
        grown = max(longest, n) * (len(current) + 1)
        if current and (len(current) >= batch_size or (max_samples is not None and grown > max_samples)):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def pad_batch(waves: Sequence["torch.Tensor"], multiple: int = 1,
              device: "torch.device | str | None" = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Zero-pad ``[channels, samples]`` waves (or ``[samples]``) into ``[B, channels, L]`` on `device`,
    with L the longest rounded up to `multiple`; returns it and the true lengths (on the CPU)."""
    import torch

    waves = [w if w.dim() == 2 else w[None] for w in waves]
    lengths = torch.tensor([int(w.shape[-1]) for w in waves], dtype=torch.long)
    longest = int(lengths.max()) if len(waves) else 0
    longest = -(-longest // multiple) * multiple
    channels = waves[0].shape[0] if waves else 1
    batch = torch.zeros(len(waves), channels, longest, dtype=torch.float32)
    for i, w in enumerate(waves):
        batch[i, :, : w.shape[-1]] = w
    # One copy of the padded batch to the device, not one per utterance.
    return (batch.to(device) if device is not None else batch), lengths


__all__ = ["length_buckets", "pad_batch"]
