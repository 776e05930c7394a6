"""A Python API for arrays: ``minecli.estimate_mi(x, y)`` from a notebook, no config file needed."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import FrameBank, Normalization, normalize_banks
from .errors import ConfigError, MinecliError
from .params import parse_params
from .spec import StreamSpec
from .trainer import (CriticConfig, EstimatorConfig, HeadConfig, MIResult, TrainConfig, Trainer, entropy_report,
                      result_warnings)

ArrayLike = Any


def _to_tensor(a: ArrayLike) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    t = t.detach().cpu()
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise MinecliError(f"expected paired frames as [N] or [N, D], got shape {tuple(t.shape)}")
    return t


def _infer_spec(parts: list[torch.Tensor], side: str, kind: str | None, vocab_size: int | None,
                frame_rate: float) -> StreamSpec:
    sample = parts[0]
    if kind is None:
        kind = "float" if sample.dtype.is_floating_point else "index"
    width = sample.shape[1]
    if kind == "float":
        return StreamSpec("float", frame_rate, dim=width)
    lo = min(int(p.min()) for p in parts if p.numel())
    hi = max(int(p.max()) for p in parts if p.numel())
    if lo < 0:
        raise MinecliError(f"{side}: index streams need non-negative token ids, found {lo}")
    vocab = vocab_size or max(hi + 1, 2)
    return StreamSpec("index", frame_rate, vocab_size=vocab, n_codebooks=width)


def _split_indices(n: int, fractions: Sequence[float], gen: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    cuts = np.cumsum([0.0, *fractions])
    cuts = (cuts / cuts[-1] * n).round().astype(int)
    return [torch.sort(order[cuts[i]:cuts[i + 1]]).values for i in range(len(fractions))]


def estimate_mi(x: ArrayLike | Sequence[ArrayLike], y: ArrayLike | Sequence[ArrayLike], *,
                estimator: str = "mine", x_kind: str | None = None, y_kind: str | None = None,
                x_vocab_size: int | None = None, y_vocab_size: int | None = None,
                context: int = 1, normalization: Normalization = "standard",
                split: Sequence[float] = (0.7, 0.1, 0.2), hidden_dims: Sequence[int] = (128, 128),
                head_x: dict[str, Any] | None = None, head_y: dict[str, Any] | None = None,
                estimator_params: dict[str, Any] | None = None, n_negatives: int = 4,
                eval_negatives: int = 64, critic: dict[str, Any] | None = None, baseline: bool = True,
                seed: int = 0, **training: Any) -> MIResult:
    """Estimate I(X;Y) in nats from paired frames, with a held-out test estimate and a 95% interval.

    ``x`` and ``y`` are arrays or tensors of paired frames, float ``[N, D]`` or integer ``[N]`` /
    ``[N, C]`` (index streams; C codebooks), or lists of per-utterance arrays (then the split is by
    utterance, marginals come from other utterances and ``context`` frames around each frame are
    used). Integer arrays are index streams unless ``x_kind``/``y_kind`` say otherwise. Other keyword
    arguments are training options (steps, batch_size, lr, validate_every, device, threads, ...);
    ``critic`` takes critic options (dropout, activation, ...).
    """
    t0 = time.perf_counter()
    per_utt = isinstance(x, (list, tuple)) and not np.isscalar(x[0]) and np.asarray(x[0]).ndim >= 1 \
        and isinstance(y, (list, tuple))
    if per_utt:
        xs, ys = [_to_tensor(a) for a in x], [_to_tensor(b) for b in y]
    else:
        xs, ys = [_to_tensor(x)], [_to_tensor(y)]
    if len(xs) != len(ys):
        raise MinecliError(f"x has {len(xs)} utterances but y has {len(ys)}")
    for i, (a, b) in enumerate(zip(xs, ys)):
        if a.shape[0] != b.shape[0]:
            raise MinecliError(f"x and y must be paired frame by frame: {'utterance %d: ' % i if per_utt else ''}"
                               f"x has {a.shape[0]} rows, y has {b.shape[0]}")
    spec_x = _infer_spec(xs, "x", x_kind, x_vocab_size, 1.0)
    spec_y = _infer_spec(ys, "y", y_kind, y_vocab_size, 1.0)
    if spec_x.kind == "float":
        xs = [a.float() for a in xs]
    if spec_y.kind == "float":
        ys = [b.float() for b in ys]
    if len(split) != 3 or min(split) <= 0:
        raise MinecliError(f"split must be three positive fractions (train, valid, test), not {tuple(split)}")

    gen = torch.Generator().manual_seed(seed + 100)
    if per_utt:
        if len(xs) < 6:
            raise MinecliError("with per-utterance lists, give at least 6 utterances (train, valid and test each "
                               "need two or more); or pass concatenated arrays")
        parts = _split_indices(len(xs), split, gen)
        full = FrameBank.from_lists(xs, ys)
        banks = {name: full.subset_utts(idx) for name, idx in zip(("train", "valid", "test"), parts)}
        del full  # the splits hold their own copies; keeping the whole would double the peak
    else:
        n = xs[0].shape[0]
        if n < 50:
            raise MinecliError(f"only {n} paired samples; MINE needs at least a few hundred")
        parts = _split_indices(n, split, gen)
        banks = {name: FrameBank.from_arrays(xs[0][idx], ys[0][idx]) for name, idx in zip(("train", "valid", "test"), parts)}
        context = 1
    normalize_banks(banks, normalization)

    train_cfg = parse_params(TrainConfig, {"seed": seed, **training}, "training")
    critic_cfg = parse_params(CriticConfig, {"hidden_dims": list(hidden_dims), **(critic or {})}, "critic")
    est = EstimatorConfig(name=estimator, params=dict(estimator_params or {}), n_negatives=n_negatives,
                          eval_negatives=eval_negatives)
    trainer = Trainer(spec_x, spec_y, banks["train"], banks["valid"], banks["test"], context_x=context,
                      context_y=context, head_x=HeadConfig(**(head_x or {})), head_y=HeadConfig(**(head_y or {})),
                      critic=critic_cfg, estimator=est, training=train_cfg)
    trainer.fit()
    final = trainer.estimate()
    entropy = entropy_report(spec_x, spec_y, banks["test"])
    base = None
    if baseline:
        # A classical estimate trains nothing, so it may use every sample, not only the test split
        # (up to a cap, so that the baseline never costs another copy of a large corpus).
        cap = 500_000
        total = sum(b.n_frames for b in banks.values())
        g = torch.Generator().manual_seed(seed + 7)
        picks = [torch.randperm(b.n_frames, generator=g)[: max(1, b.n_frames * cap // total)] if total > cap
                 else torch.arange(b.n_frames) for b in banks.values()]
        everything = FrameBank.from_arrays(torch.cat([b.x[i] for b, i in zip(banks.values(), picks)]),
                                           torch.cat([b.y[i] for b, i in zip(banks.values(), picks)]))
        base = classical_baseline(everything, spec_x, spec_y)
    warns = result_warnings(final["mi_nats"], final["ci95_nats"], entropy, final["n_marginal"],
                            trainer.estimator, est.eval_negatives)
    seconds = time.perf_counter() - t0
    return MIResult(mi_nats=final["mi_nats"], ci95_nats=final["ci95_nats"], estimator=estimator,
                    lower_bound=bool(trainer.estimator.lower_bound), n_test_frames=final["n_frames"],
                    n_test_utts=final["n_utts"], ci_method=final["ci_method"], p_value=final["p_value"],
                    best_step=trainer.best_step, steps_run=trainer.step, stopped_early=trainer.stopped_early,
                    seconds=seconds, history=trainer.history, entropy=entropy, baseline=base, warnings=warns,
                    pairs_per_second=trainer.step * trainer.pairs_per_step / max(trainer.train_seconds, 1e-9))


def classical_baseline(bank: FrameBank, spec_x: StreamSpec, spec_y: StreamSpec) -> dict[str, Any] | None:
    """A classical estimate on the test frames, when one is reliable for this pair of streams."""
    try:
        from .baselines import choose_baseline
    except ImportError:  # pragma: no cover
        return None
    try:
        return choose_baseline(bank.x.numpy(), bank.y.numpy(), spec_x.kind, spec_y.kind)
    except (ValueError, MemoryError) as exc:
        return {"method": None, "reason": str(exc)}


__all__ = ["estimate_mi", "MIResult", "ConfigError"]
