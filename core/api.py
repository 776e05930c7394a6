"""A Python API for arrays: ``minecli.estimate_mi(x, y)`` from a notebook, no config file needed."""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from .crossfit import CROSS_FIT_MAX_FRAMES, CROSS_FIT_MAX_WIDTH, other_parts
from .data import FrameBank, Normalization, normalize_banks
from .errors import ConfigError, MinecliError
from .interval import include_estimate
from .params import parse_params
from .serial import MIN_SERIES_BLOCKS, series_blocks, stream_correlation_length
from .spec import StreamSpec
from .trainer import (CriticConfig, EstimatorConfig, HeadConfig, MIResult, Progress, TrainConfig, Trainer,
                      entropy_report, result_warnings)
from .verdict import trainer_suspicions

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


def _blocks_if_serial(x: torch.Tensor, y: torch.Tensor, force: bool,
                      min_blocks: int) -> tuple[list[torch.Tensor], list[torch.Tensor], bool, str | None]:
    """One array cut into gapped contiguous blocks (as utterances) when its frames are serially correlated."""
    length = stream_correlation_length(x, y)
    if length < 2 and not force:
        return [x], [y], False, None
    length = max(length, 2)
    blocks, block, gap = series_blocks(x.shape[0], length, min_blocks)
    note = (f"x and y are serially correlated (correlation length {length} frames, measured in the given order): "
            f"they were split as {len(blocks)} contiguous blocks of {block} frames with {gap} frames dropped "
            f"between blocks, not frame by frame; pass per-utterance lists to split by utterance, or "
            "serial='iid' if the rows are exchangeable")
    warnings.warn(note, stacklevel=3)
    return [x[s] for s in blocks], [y[s] for s in blocks], True, note


def split_plan(n_units: int, split: Sequence[float], folds: int, seed: int) -> list[list[torch.Tensor]]:
    """(train, valid, test) unit indices for each fold, exactly as ``estimate_mi`` draws them."""
    gen = torch.Generator().manual_seed(seed + 100)
    if folds == 1:
        return [_split_indices(n_units, split, gen)]
    order = torch.randperm(n_units, generator=gen)
    cuts = np.linspace(0, n_units, folds + 1).round().astype(int)
    plans = []
    for k in range(folds):
        rest = torch.cat([order[:cuts[k]], order[cuts[k + 1]:]])
        n_valid = max(2, int(round(len(rest) * split[1] / (split[0] + split[1]))))
        plans.append([torch.sort(rest[n_valid:]).values, torch.sort(rest[:n_valid]).values,
                      torch.sort(order[cuts[k]:cuts[k + 1]]).values])
    return plans


def estimate_mi(x: ArrayLike | Sequence[ArrayLike], y: ArrayLike | Sequence[ArrayLike], *,
                estimator: str = "mine", x_kind: str | None = None, y_kind: str | None = None,
                x_vocab_size: int | None = None, y_vocab_size: int | None = None,
                context: int = 1, normalization: Normalization = "auto",
                split: Sequence[float] = (0.7, 0.1, 0.2), hidden_dims: Sequence[int] = (128, 128),
                head_x: dict[str, Any] | None = None, head_y: dict[str, Any] | None = None,
                estimator_params: dict[str, Any] | None = None, n_negatives: int = 4,
                eval_negatives: int = 64, critic: dict[str, Any] | None = None, baseline: bool = True,
                folds: int = 1, seed: int = 0, serial: Literal["auto", "blocks", "iid"] = "auto",
                **training: Any) -> MIResult:
    """Estimate I(X;Y) in nats from paired frames, with a held-out test estimate and a 95% interval.

    ``x`` and ``y`` are arrays or tensors of paired frames, float ``[N, D]`` or integer ``[N]`` /
    ``[N, C]`` (index streams; C codebooks), or lists of per-utterance arrays (then the split is by
    utterance, marginals come from other utterances and ``context`` frames around each frame are
    used). Integer arrays are index streams unless ``x_kind``/``y_kind`` say otherwise. Other keyword
    arguments are training options (steps, batch_size, lr, validate_every, device, threads, ...);
    ``critic`` takes critic options (dropout, activation, ...).

    ``folds=K`` (K >= 2) cross-fits: the samples (or utterances) are cut into K folds, and a critic
    trained on the other folds (split train/valid in the ratio of ``split``) scores each fold, so
    every sample is test data once. The estimate is the frame-weighted mean of the K held-out
    bounds, its interval combines the folds' bootstrap errors, and the p-value combines theirs
    (Fisher). It costs K trainings and cuts the test noise by about sqrt(K * test fraction): worth
    it on small corpora, where that noise dominates the error. With one split (the default), a
    closed-form reference that gives the estimate is cross-fitted anyway when the data hold at most
    200,000 frames of at most 256 float values (``critic={"reference_cross_fit": False}`` turns it
    off): refitted, not trained, for each other part of the data the size of the test split, so that
    every sample is scored once at the cost of a few fits.

    A single array whose frames are serially correlated (``serial="auto"`` measures the correlation
    length of both streams in the given order; ``"blocks"`` assumes it) is never split frame by frame:
    neighbouring frames would sit in train and test alike. It is cut into contiguous blocks of six
    correlation lengths with gaps of two dropped between them, the blocks are split like utterances,
    and a warning says so. ``serial="iid"`` declares the rows exchangeable and splits them one by one.
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

    if not isinstance(folds, int) or folds < 1:
        raise MinecliError(f"folds must be 1 (one train/valid/test split) or a number of folds >= 2, not {folds!r}")
    if serial not in ("auto", "blocks", "iid"):
        raise MinecliError(f"serial must be 'auto', 'blocks' or 'iid', not {serial!r}")
    notes: list[str] = []
    if not per_utt:
        context = 1
        if xs[0].shape[0] < 50:
            raise MinecliError(f"only {xs[0].shape[0]} paired samples; MINE needs at least a few hundred")
        if serial != "iid":
            xs, ys, per_utt, note = _blocks_if_serial(xs[0], ys[0], serial == "blocks", max(MIN_SERIES_BLOCKS, 4 * folds))
            notes += [note] if note else []
    elif len(xs) < (6 if folds == 1 else max(6, 2 * folds)):
        raise MinecliError(f"with per-utterance lists, give at least {max(6, 2 * folds)} utterances (every split "
                           "needs two or more); or pass concatenated arrays")
    plans = split_plan(len(xs) if per_utt else xs[0].shape[0], split, folds, seed)

    train_cfg = parse_params(TrainConfig, {"seed": seed, **training}, "training")
    critic_cfg = parse_params(CriticConfig, {"hidden_dims": list(hidden_dims), **(critic or {})}, "critic")
    est = EstimatorConfig(name=estimator, params=dict(estimator_params or {}), n_negatives=n_negatives,
                          eval_negatives=eval_negatives)
    full: FrameBank | None = FrameBank.from_lists(xs, ys) if per_utt else FrameBank.from_arrays(xs[0], ys[0])
    del xs, ys

    def make_banks(parts: list[torch.Tensor]) -> dict[str, FrameBank]:
        assert full is not None
        return {name: (full.subset_utts(idx) if per_utt else FrameBank.from_arrays(full.x[idx], full.y[idx]))
                for name, idx in zip(("train", "valid", "test"), parts)}

    banks = make_banks(plans[0])
    widths = [int(spec.dim or 0) * context for spec in (spec_x, spec_y) if spec.kind == "float"]
    cross_fit = (folds == 1 and critic_cfg.reference and critic_cfg.reference_cross_fit
                 and full.n_frames <= CROSS_FIT_MAX_FRAMES and max(widths, default=0) <= CROSS_FIT_MAX_WIDTH)
    if folds == 1 and not cross_fit:
        full = None  # the splits hold their own copies; keeping the whole would double the peak

    def make_trainer(banks: dict[str, FrameBank]) -> Trainer:
        normalize_banks(banks, normalization)
        return Trainer(spec_x, spec_y, banks["train"], banks["valid"], banks["test"], context_x=context,
                       context_y=context, head_x=HeadConfig(**(head_x or {})), head_y=HeadConfig(**(head_y or {})),
                       critic=critic_cfg, estimator=est, training=train_cfg)

    fits = []
    for k in range(folds):
        if k:
            banks = make_banks(plans[k])
        trainer = make_trainer(banks)
        trainer.fit()
        fits.append((trainer, trainer.estimate(), banks["test"].n_frames))
    trainer, final, _ = fits[0]
    if cross_fit and trainer.reference is not None:
        parts, why = _cross_fitted_parts(other_parts(plans[0], split, seed), make_banks, make_trainer,
                                         train_cfg.progress)
        fits += parts
        notes += [f"{why}: the estimate is the main split's alone"] if why else []
    if folds == 1 and len(fits) == 1:
        full = None
    if len(fits) > 1:
        final = _combine_folds([(f, n) for _, f, n in fits])
    # With folds, each fold normalises with its own train statistics: entropies and baselines then
    # use the whole corpus as given.
    entropy = entropy_report(spec_x, spec_y, full if full is not None else banks["test"])
    if context > 1:  # an estimate over windows meets the window's ceiling, not one frame's
        from .units import sample_units, window_ceilings

        entropy = window_ceilings(entropy, sample_units(1.0, 1.0, 1.0, context, context))
    base = None
    if baseline:
        # The test frames of the estimate (every frame, with folds): the baseline reads the same split.
        base = test_split_baseline(full if full is not None else banks["test"], spec_x, spec_y,
                                   final["correlation_length_frames"], seed)
    if base and base.get("mi_nats") is not None:
        include_estimate(final, float(base["mi_nats"]), "baseline_nats")
    warns = notes + result_warnings(final["mi_nats"], final["ci95_nats"], entropy, final["n_marginal"],
                                    trainer.estimator, est.eval_negatives)
    for i, (fit, fold_final, _n) in enumerate(fits):
        warns += [w if len(fits) == 1 else f"{'fold' if folds > 1 else 'part'} {i + 1}: {w}"
                  for w in trainer_suspicions(fit, fold_final)]
    seconds = time.perf_counter() - t0
    train_s = sum(t.train_seconds for t, _, _ in fits)
    return MIResult(mi_nats=final["mi_nats"], ci95_nats=final["ci95_nats"], estimator=estimator,
                    ci95_test_noise_nats=final["ci95_test_noise_nats"], ci_terms=final["ci_terms"],
                    lower_bound=bool(trainer.estimator.lower_bound) and final["half_sample"] is None,
                    held_out_bound_nats=(final["half_sample"] or {}).get("held_out_bound_nats"),
                    half_sample=final["half_sample"], n_test_frames=final["n_frames"],
                    n_test_utts=final["n_utts"], ci_method=final["ci_method"], p_value=final["p_value"],
                    best_step=trainer.best_step, steps_run=trainer.step, stopped_early=trainer.stopped_early,
                    stop_reason=trainer.stop_reason,
                    seconds=seconds, history=trainer.history, entropy=entropy, baseline=base, warnings=warns,
                    critic=trainer.describe_critic() + (
                        f"; cross-fitted: refitted for {len(fits) - 1} other parts of the data the size of the test "
                        "split, every sample scored once" if folds == 1 and len(fits) > 1 else ""),
                    reference=trainer.reference_report,
                    p_value_text=final["p_value_text"], n_permutations=final["n_permutations"],
                    permutation_unit=final["permutation_unit"],
                    correlation_length_frames=final["correlation_length_frames"],
                    pairs_per_second=sum(t.step * t.pairs_per_step for t, _, _ in fits) / max(train_s, 1e-9),
                    precision=trainer.precision,
                    folds=[{"mi_nats": f["mi_nats"], "ci95_nats": list(f["ci95_nats"]),
                            "ci95_test_noise_nats": list(f["ci95_test_noise_nats"]), "n_test_frames": n,
                            "best_step": t.best_step, "steps_run": t.step, "critic": t.describe_critic(),
                            "held_out_bound_nats": (f["half_sample"] or {}).get("held_out_bound_nats")}
                           for t, f, n in fits] if len(fits) > 1 else [])


def _cross_fitted_parts(plans: list[list[torch.Tensor]],
                        make_banks: Callable[[list[torch.Tensor]], dict[str, FrameBank]],
                        make_trainer: Callable[[dict[str, FrameBank]], Trainer],
                        progress: bool) -> tuple[list[tuple[Trainer, dict[str, Any], int]], str | None]:
    """The selected reference refitted (no training) on each other part's train split and scored on the part; none,
    and why, when a part has no reference that fits and validates to a finite bound (the main split's estimate then
    stands)."""
    out = []
    bar = Progress(len(plans), 0, progress and bool(plans), "cross-fitting the reference", unit="part")
    try:
        for i, plan in enumerate(plans):
            banks = make_banks(plan)
            trainer = make_trainer(banks)
            try:
                adopted = trainer.selection.adopt()
            except (RuntimeError, ValueError) as exc:
                # the main split's fit succeeded: a degenerate part (a constant dimension, a singular
                # covariance) costs the cross-fit, not the run
                return [], f"the reference could not be refitted for part {i + 2} of the cross-fit ({exc})"
            if not adopted:
                return [], f"no reference refitted for part {i + 2} of the cross-fit validated to a finite bound"
            out.append((trainer, trainer.estimate(), banks["test"].n_frames))
            bar.update(1)
    finally:
        bar.close()
    return out, None


def _combine_folds(results: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """One estimate from K held-out fold estimates: frame-weighted mean, combined SE, Fisher p-value."""
    n_total = sum(n for _, n in results)
    weights = [n / n_total for _, n in results]
    mi = sum(w * r["mi_nats"] for w, (r, _) in zip(weights, results))
    # Folds are disjoint test sets scored by different critics, so their errors are independent.
    se = math.sqrt(sum((w * (r["ci95_test_noise_nats"][1] - r["ci95_test_noise_nats"][0]) / (2 * 1.96)) ** 2
                       for w, (r, _) in zip(weights, results)))
    ps = [r["p_value"] for r, _ in results]
    p_value = None
    if all(p is not None for p in ps):
        # Fisher: -2 sum log p ~ chi2(2K) under the null; its survival function in closed form.
        half = -sum(math.log(max(p, 1e-300)) for p in ps)
        p_value = min(1.0, math.exp(-half) * sum(half**i / math.factorial(i) for i in range(len(ps))))
    first = results[0][0]
    noise = (mi - 1.96 * se, mi + 1.96 * se)
    corrected = None
    if any(r["half_sample"] for r, _ in results):
        # folds whose estimate is its held-out bound contribute that bound as it is
        held = sum(w * (r["half_sample"] or {}).get("held_out_bound_nats", r["mi_nats"])
                   for w, (r, _) in zip(weights, results))
        corrected = {"held_out_bound_nats": held, "folds": [r["half_sample"] for r, _ in results]}
    # Bias does not average out over folds: the folds' own widenings, frame-weighted, around the combined noise.
    widened = (min(noise[0], sum(w * r["ci95_nats"][0] for w, (r, _) in zip(weights, results))),
               max(noise[1], sum(w * r["ci95_nats"][1] for w, (r, _) in zip(weights, results))))
    n_perm = first["n_permutations"]
    # Fisher's combination is continuous: its floor is the floors' combination, not 1/(1 + n_perm).
    floor = None
    if p_value is not None:
        half = len(ps) * math.log(1 + n_perm)
        floor = min(1.0, math.exp(-half) * sum(half**i / math.factorial(i) for i in range(len(ps))))
    text = None if p_value is None else (f"< {floor:.2g}" if p_value <= floor * (1 + 1e-9) else f"{p_value:.2g}")
    return {"mi_nats": mi, "ci95_nats": widened, "ci95_test_noise_nats": noise, "half_sample": corrected,
            "ci_terms": {"folds": [r["ci_terms"] for r, _ in results]},
            "ci_method": f"{first['ci_method']} in each of {len(results)} folds", "p_value": p_value,
            "p_value_text": text, "n_permutations": n_perm * len(results),
            "permutation_unit": first["permutation_unit"],
            "correlation_length_frames": max(r["correlation_length_frames"] for r, _ in results),
            "n_frames": n_total, "n_utts": sum(r["n_utts"] for r, _ in results),
            "n_marginal": sum(r["n_marginal"] for r, _ in results)}


def test_split_baseline(bank: FrameBank, spec_x: StreamSpec, spec_y: StreamSpec, correlation_length: int,
                        seed: int = 0, cap: int = 500_000) -> dict[str, Any] | None:
    """The classical baseline on the estimate's test frames, or why there is none for serially correlated ones."""
    if correlation_length >= 2:
        # kNN and plug-in estimates count a frame's temporal neighbours as dependence (independent
        # AR(1) streams read several nats), so none is given rather than a misleading one.
        return {"method": None, "mi_nats": None,
                "reason": f"the test frames are serially correlated over {correlation_length} frames; classical "
                          "estimates would read temporal neighbours as dependence"}
    if bank.n_frames > cap:  # never another copy of a large corpus
        pick = torch.randperm(bank.n_frames, generator=torch.Generator().manual_seed(seed + 7))[:cap]
        bank = FrameBank.from_arrays(bank.x[pick], bank.y[pick])
    return classical_baseline(bank, spec_x, spec_y)


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
