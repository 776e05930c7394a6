"""The training loop: a critic fitted on train frames, validated on a fixed protocol with early stopping, and
the final held-out estimate. Scoring (scoring.py), selection against the reference (selection.py),
checkpoints (resume.py), resampling for the interval and p-value (resampling.py, serial.py) and the
widening of the interval by the estimator's bias (interval.py) live beside it."""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import bounds
from .build import (AUTO_CLASSIFIER_VOCAB, AUTO_QUADRATIC_DIM, build_critic, build_head, classifier_side,
                    quadratic_rank, resolve_device)
from .data import FrameBank, take_rows
from .errors import MinecliError
from .half_sample import corrected_estimate, posterior_corrected
from .interfaces import Estimator
from .interval import honest_interval
from .nets import ClassifierCritic
from .precision import autocast, resolve_precision, takes_bf16_input
from .prefetch import BatchPrefetcher
from .reference import ReferenceCritic
from .registry import get_estimator_class
from .resampling import (block_bootstrap_indices, block_length, bootstrap_interval, p_value_text, permutation_p,
                         split_units)
from .result import LOG2, MIResult, entropy_report, result_warnings
from .resume import Checkpoints
from .runtime import training_threads
from .scoring import score_bank, valid_protocol
from .selection import LEAD_SE, ReferenceFit, ReferenceSelection
from .settings import CriticConfig, EstimatorConfig, HeadConfig, TrainConfig
from .spec import StreamSpec

# The largest bfloat16 copy of a train split's float frames that bf16 training keeps for its gathers.
BF16_COPY_MAX_BYTES = 1 << 30

# Kept importable from here: callers and plugins built against the single-module trainer.
_ReferenceFit = ReferenceFit
__all__ = ["AUTO_CLASSIFIER_VOCAB", "AUTO_QUADRATIC_DIM", "CriticConfig", "EstimatorConfig", "HeadConfig", "LOG2",
           "MIResult", "TrainConfig", "Trainer", "block_bootstrap_indices", "block_length", "build_critic",
           "build_head", "classifier_side", "entropy_report", "quadratic_rank", "resolve_device", "result_warnings"]


def _check_bank(bank: FrameBank, spec: StreamSpec, side: str, split: str) -> None:
    t = bank.x if side == "x" else bank.y
    if spec.kind == "index":
        if t.dtype != torch.long:
            raise MinecliError(f"{split} {side}: an index stream needs integer frames, got {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= spec.vocab_size):
            raise MinecliError(f"{split} {side}: token ids span [{int(t.min())}, {int(t.max())}] but vocab_size is "
                               f"{spec.vocab_size}; set the right vocab_size")
    elif not t.dtype.is_floating_point:
        raise MinecliError(f"{split} {side}: a float stream needs float frames, got {t.dtype}")
    if t.shape[1] != spec.width:
        raise MinecliError(f"{split} {side}: frames have width {t.shape[1]} but the stream spec says {spec.width}")
    if spec.kind == "float" and not torch.isfinite(t).all():
        raise MinecliError(f"{split} {side}: frames contain NaN or infinite values")


class Progress:
    """A tqdm bar on stderr when enabled (tqdm itself decides how to show it off a terminal), else nothing."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str, unit: str = "step") -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                            dynamic_ncols=True, leave=False, disable=None)

    def update(self, n: int = 1, **post: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if post:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in post.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _PairScores(torch.nn.Module):
    """The critic's training forward pass (encode, then joint and marginal scores) as one ``forward``, which is
    what DistributedDataParallel hooks to reduce the gradients of a step."""

    def __init__(self, critic: torch.nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint ``[N]`` and marginal ``[N, K]`` scores of a training batch."""
        ax, ay = self.critic.encode(x, y)
        return self.critic.score_negatives(ax, ay, ay, neg)


class Trainer:
    """Trains a critic on train frames, validates on a fixed protocol, estimates on test frames.

    With ``distributed`` (inside a torchrun process group) every rank trains the same critic under
    DistributedDataParallel on frames of its own: a step's batch is world_size x batch_size segments.
    Validation and the test scoring of ``estimate`` are sharded by frame over the ranks (every rank must
    call them); rank 0 fits the reference, decides (the others follow its decisions) and alone writes
    checkpoints.
    """

    def __init__(self, spec_x: StreamSpec, spec_y: StreamSpec, train: FrameBank, valid: FrameBank,
                 test: FrameBank | None = None, *, context_x: int = 1, context_y: int = 1,
                 head_x: HeadConfig | None = None, head_y: HeadConfig | None = None,
                 critic: CriticConfig | None = None, estimator: EstimatorConfig | None = None,
                 training: TrainConfig | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
                 save_every: int | None = None, resume: bool = True, config_doc: dict[str, Any] | None = None,
                 distributed: bool = False) -> None:
        from .distributed import RANK_SEED_STRIDE, active, rank, world_size

        self.distributed = distributed and active()
        self.rank = rank() if self.distributed else 0
        self.world = world_size() if self.distributed else 1
        #: rank 0 (or the only process): receives the validation and test scores, selects, writes checkpoints
        self.primary = self.rank == 0
        self.spec_x, self.spec_y = spec_x, spec_y
        self.train, self.valid, self.test = train, valid, test
        self.cx, self.cy = context_x, context_y
        self.head_x, self.head_y = head_x or HeadConfig(), head_y or HeadConfig()
        self.critic_cfg = critic or CriticConfig()
        self.est_cfg = estimator or EstimatorConfig()
        self.cfg = training or TrainConfig()
        self.ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.save_every = save_every
        self.resume = resume
        self.config_doc = config_doc or {}
        for bank, split in ((train, "train"), (valid, "valid"), (test, "test")):
            if bank is None:
                continue
            _check_bank(bank, spec_x, "x", split)
            _check_bank(bank, spec_y, "y", split)
        if train.n_frames < 2:
            raise MinecliError("the train split has fewer than two paired frames")
        if valid.n_utts < 2:
            raise MinecliError("the valid split needs at least two utterances (marginals come from other utterances)")
        self.device = resolve_device(self.cfg.device)
        #: 'float32' or 'bf16': the arithmetic of training steps (scoring is float32 either way)
        widths = [int(spec.dim or 0) * c for spec, c in ((spec_x, self.cx), (spec_y, self.cy)) if spec.kind == "float"]
        self.precision = resolve_precision(self.cfg.precision, self.device, max(widths, default=0))
        torch.manual_seed(self.cfg.seed)
        self.model = build_critic(spec_x, spec_y, self.cx, self.cy, self.head_x, self.head_y, self.critic_cfg).to(self.device)
        #: torch CPU threads of the training steps, and whether the next batch is prepared while a step runs
        self.threads, self.prefetch = training_threads(
            self.cfg.threads, self.cfg.prefetch, self.device, self.model,
            self.cfg.batch_size * self.cfg.segment_length, self.est_cfg.n_negatives)
        torch.set_num_threads(self.threads)
        # Float streams whose head casts them to bfloat16 anyway reach it in bfloat16: gathered from a
        # bfloat16 copy of the train frames when that is small (half the bytes to gather and no cast:
        # 0.54 instead of 1.87 ms to prepare a batch of the original pipeline's geometry), else cast
        # after gathering.
        heads = {"x": getattr(self.model, "head_x", None), "y": getattr(self.model, "head_y", None)}
        if isinstance(self.model, ClassifierCritic):
            heads = {self.model.label_side: None, "y" if self.model.label_side == "x" else "x": self.model.head}
        self._bf16_inputs = {side: self.precision == "bf16" and spec.kind == "float" and head is not None
                             and takes_bf16_input(head)
                             for side, spec, head in (("x", spec_x, heads["x"]), ("y", spec_y, heads["y"]))}
        self._train_frames = {side: (frames.to(torch.bfloat16) if self._bf16_inputs[side]
                                     and frames.numel() * 2 <= BF16_COPY_MAX_BYTES else frames)
                              for side, frames in (("x", train.x), ("y", train.y))}
        if isinstance(self.model, ClassifierCritic):
            self.model.init_prior(train.x if self.model.label_side == "x" else train.y)
        est_cls = get_estimator_class(self.est_cfg.name)
        self.estimator: Estimator = est_cls(est_cls.parse(self.est_cfg.params, "estimator.params"))
        mlp = self.model.mlp_parameters()
        in_mlp = {id(p) for p in mlp}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in in_mlp], "lr_ratio": 1.0},
                  {"params": mlp, "lr_ratio": self.critic_cfg.mlp_lr_scale}]
        # fused: the whole update of a tensor in one kernel, a third of the time of foreach on the CPU
        # (which in turn was 12% of a step faster than torch's default loop per tensor).
        self.opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.cfg.lr,
                                     weight_decay=self.cfg.weight_decay, fused=True)
        self.gen = torch.Generator().manual_seed(self.cfg.seed + 1 + RANK_SEED_STRIDE * self.rank)
        # Pairs of one optimiser step over all ranks: an epoch stays an epoch whatever the world size.
        self.pairs_per_step = self.cfg.batch_size * self.cfg.segment_length * self.world
        self.ddp: torch.nn.Module | None = None
        if self.cfg.epochs is not None:
            self.total_steps = max(1, int(math.ceil(self.cfg.epochs * train.n_frames / self.pairs_per_step)))
        else:
            self.total_steps = int(self.cfg.steps or 1)
        self.step = 0
        self.best_value = -math.inf
        self.best_step = 0
        self.bad_validations = 0
        #: the reading a validation must beat to count as progress for early stopping (see fit)
        self.progress_bar = -math.inf
        self._last_validation: tuple[torch.Tensor, torch.Tensor] | None = None  # its scores, for the reading's SE
        self.lr_scale = 1.0
        self.since_lr_change = 0
        self.stopped_early = False
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.initial_state: dict[str, torch.Tensor] | None = None
        self.untrained_kept: tuple[int, float] | None = None  # (best step, its validation) when reverted
        #: why the selected reference's estimate was left uncorrected although the correction was on (rank 0)
        self.half_sample_note: str | None = None
        self.stop_reason: str | None = None
        self._valid_protocol = valid_protocol(valid, self.cfg.valid_frames, self.cfg.valid_negatives, self.cfg.seed)
        self.selection = ReferenceSelection(spec_x, spec_y, self.cx, self.cy, self.critic_cfg.reference, train,
                                            self._valid_protocol, self._score_protocol, self.estimator.bound,
                                            self.device, self.cfg.seed)
        self.checkpoints = Checkpoints(self.ckpt_dir) if self.ckpt_dir is not None else None
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ sampling
    def _negatives_in_batch(self, n_seg: int, length: int, k: int) -> torch.Tensor:
        """Rows of the batch to pair with each row: from other segments (other crops), never the same row."""
        n = n_seg * length
        rows = torch.arange(n)
        if n_seg >= 2:
            seg = rows // length
            other = (seg[:, None] + torch.randint(1, n_seg, (n, k), generator=self.gen)) % n_seg
            return other * length + torch.randint(0, length, (n, k), generator=self.gen)
        return (rows[:, None] + torch.randint(1, n, (n, k), generator=self.gen)) % n

    def _training_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's x and y context windows and in-batch negatives (float streams in bfloat16 where
        bf16 training's heads take them so)."""
        cfg = self.cfg
        frames = self.train.sample_segments(self.gen, cfg.batch_size, cfg.segment_length)
        neg = self._negatives_in_batch(cfg.batch_size, cfg.segment_length, self.est_cfg.n_negatives)
        src = self._train_frames
        x = take_rows(src["x"], self.train.windows(frames, self.cx))
        y = take_rows(src["y"], self.train.windows(frames, self.cy))
        if self._bf16_inputs["x"]:
            x = x.to(torch.bfloat16)
        if self._bf16_inputs["y"]:
            y = y.to(torch.bfloat16)
        return x, y, neg

    # ------------------------------------------------------------------ scoring
    def score_bank(self, bank: FrameBank, neg: torch.Tensor | int, chunk: int = 8192,
                   gen: torch.Generator | None = None, critic: torch.nn.Module | None = None,
                   sharded: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint ``[N]`` and marginal ``[N, K]`` scores of a split by `critic` (default: the one giving the estimate).

        ``sharded`` in a distributed run: every rank must call it, each scores a share of the frames and
        rank 0 alone receives the scores (the other ranks get zero rows).
        """
        return score_bank(critic or self.scorer, bank, neg, self.cx, self.cy, self.device, chunk, gen,
                          sharded=sharded and self.distributed)

    def _bound(self, tj: torch.Tensor, tm: torch.Tensor) -> float:
        """The estimator's bound of scores from a sharded score_bank: NaN on the ranks that received none."""
        return float(self.estimator.bound(tj, tm)) if self.primary else math.nan

    @property
    def scorer(self) -> torch.nn.Module:
        """The critic that gives the estimate: the reference critic when it was selected, else the trained one."""
        return self.reference if self.reference is not None else self.model

    @property
    def reference(self) -> ReferenceCritic | None:
        """The closed-form critic when it was selected to give the estimate, else None."""
        return self.selection.selected

    @property
    def reference_report(self) -> dict[str, Any] | None:
        """How the reference fared against the trained critic (None before selection or without a reference)."""
        return self.selection.report

    def describe_critic(self) -> str:
        """One line naming the critic that gives the estimate (and what it beat)."""
        rep = self.reference_report
        if rep is not None and rep.get("cross_fit"):
            return f"{rep['critic']}; validation {rep['valid_nats']:.3f} nats (refitted for a part of the cross-fit)"
        if rep is not None and rep["selected"]:
            level = rep.get("trained_level_nats", rep["trained_valid_nats"])
            return (f"{rep['critic']}; validation {rep['valid_nats']:.3f} nats against {rep['trained_valid_nats']:.3f} "
                    f"for the trained {self.model.describe()} ({level:.3f} averaged with the checkpoints either side; "
                    f"it would need a lead of {LEAD_SE:g} standard errors of {rep['difference_se_nats']:.3f})")
        notes = []
        name = self.model.describe()
        if self.untrained_kept is not None:
            step, value = self.untrained_kept
            name = f"untrained {name}"
            notes.append(f"the best trained state, step {step}, validated {value:.3f} nats, not significantly above it")
        if rep is not None:
            best = rep["critic"].split(" (")[0]  # the candidate that validated highest, e.g. "gaussian copula reference"
            if rep["valid_nats"] < rep["trained_valid_nats"]:
                notes.append(f"the {best} validated lower: {rep['valid_nats']:.3f} nats against "
                             f"{rep['trained_valid_nats']:.3f}")
            else:
                notes.append(f"the {best} validated {rep['valid_nats']:.3f} nats, not significantly above the "
                             "untrained critic")
        return f"{name} ({'; '.join(notes)})" if notes else name

    def validate(self) -> float:
        """The trained critic's bound on the fixed validation protocol (distributed: every rank scores a share
        and rank 0 returns the bound, the others NaN)."""
        bank, neg = self._valid_protocol
        self._sync_buffers()
        tj, tm = self.score_bank(bank, neg, critic=self.model, sharded=True)
        self._last_validation = (tj, tm)
        return self._bound(tj, tm)

    def _validation_se(self) -> float:
        """The standard error of the last validation reading, resampled by the units that carry the split's
        dependence (rank 0; 0 on the other ranks, whose stop decisions rank 0's replace).

        Early stopping's unit of progress. Readings of successive checkpoints on the same frames creep up by
        thousandths long after the critic has stopped learning: on a Gaussian with Student-t noise (0.58 nats)
        the validation sat at 0.611-0.613 from step 1,000 to 2,800, each new high by 0.001 starting the
        patience over, while the test bound stayed at 0.574-0.578.
        """
        scores = self._last_validation
        c = self.cfg
        if not self.primary or scores is None or c.early_stopping_min_delta == 0 or c.early_stopping_patience is None:
            return 0.0
        return self.selection.validation_se(scores)

    def _sync_buffers(self) -> None:
        """Rank 0's buffers on every rank (a no-op in one process), so that all ranks score with one critic.

        DistributedDataParallel keeps the parameters equal but lets each rank's forward passes update its
        own buffers (BatchNorm statistics) until the next step broadcasts rank 0's again.
        """
        buffers = list(self.model.buffers()) if self.distributed else []
        if not buffers:
            return
        import torch.distributed as dist

        for buf in buffers:
            # Through the CPU: the default group is gloo, whatever device the critic sits on.
            host = buf.detach().cpu()
            dist.broadcast(host, src=0)
            buf.copy_(host)

    def _score_protocol(self, critic: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        bank, neg = self._valid_protocol
        # Not sharded: rank 0 alone fits and selects the reference, while the other ranks train or wait.
        return self.score_bank(bank, neg, critic=critic)

    # ------------------------------------------------------------------ selection
    def consider_reference(self, scores: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Select the closed-form critic unless the trained one (its curve's level) leads it by over LEAD_SE SEs.

        Distributed, every rank must call it: rank 0 alone fits and selects, and the others receive its choice
        (they score the test split with the selected critic).
        """
        if self.primary:
            self.selection.consider(self.model, self.best_value, self.history, scores)
            if self.reference is not None and self.checkpoints is not None:
                self.checkpoints.save_reference(self)
        self._share_selection()

    def _cannot_overtake_reference(self) -> bool:
        """True when the reference validates higher and training, at its recent pace, would not catch it up."""
        c = self.cfg
        return self.selection.cannot_overtake(self.step, self.best_value, self.history, c.early_stopping_patience,
                                              c.validate_every, c.min_steps, self.total_steps)

    def _save(self, which: str) -> None:
        if self.checkpoints is None:
            return
        ranks = None
        if self.distributed and which == "last":
            from .distributed import gather

            # Every rank's sampler and estimator state (a moving average of its own batches), so that a
            # resumed run continues on each rank as an uninterrupted one would.
            ranks = gather((self.gen.get_state(), self.estimator.state_dict()))
        if self.primary:
            self.checkpoints.save(self, which, ranks)

    def _shared_validation(self) -> float:
        """The trained critic's validation bound, scored by all ranks together and the same on every rank."""
        if not self.distributed:
            return self.validate()
        from .distributed import broadcast

        # Every rank scores its share; only rank 0 holds all the scores, and its bound holds for all.
        return float(broadcast(self.validate()))

    def _unwrap(self) -> None:
        """Free DistributedDataParallel now, while the process group it holds still exists."""
        if self.ddp is not None:
            import gc

            self.ddp = None
            # Collected here, with the training loop, rather than whenever the cycles it sits in are next swept.
            gc.collect()

    def _wrap(self) -> None:
        """Put the critic under DistributedDataParallel (after any resume: every rank then holds the same weights)."""
        if not self.distributed or self.ddp is not None:
            return
        from torch.nn.parallel import DistributedDataParallel

        from .distributed import training_group

        on_gpu = self.device.type == "cuda"
        self.ddp = DistributedDataParallel(_PairScores(self.model), device_ids=[self.device.index] if on_gpu else None,
                                           process_group=training_group(self.device))

    # ------------------------------------------------------------------ training
    def _lr_at(self, step: int) -> float:
        if self.cfg.lr_schedule == "plateau":
            return self.cfg.lr * self.lr_scale
        if self.cfg.lr_schedule == "cosine":
            # Decay to 10% of the peak: small final steps sharpen the critic without freezing it.
            frac = min(1.0, step / max(1, self.total_steps))
            return self.cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        return self.cfg.lr

    def fit(self) -> list[dict[str, float]]:
        """Train until total_steps or early stopping; keeps the best validation state."""
        if self.initial_state is None:
            # The untrained critic, which the best state must beat significantly; taken before any resume
            # (the same seeded initialisation), so that a resumed run decides as the uninterrupted one.
            self.initial_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.checkpoints is not None:
            if self.primary:
                self.checkpoints.clear_stale()
            if self.resume:
                # Every rank reads rank 0's checkpoint (the output folder is shared like the cache).
                self.checkpoints.try_resume(self, self.rank)
        self._wrap()
        cfg = self.cfg
        dev = self.device
        bar = Progress(self.total_steps, self.step, cfg.progress, "training")
        acc = torch.zeros((), dtype=torch.float64)
        acc_n = 0
        t0 = time.perf_counter()
        self.model.train()
        if self.step == 0 and not self.history:
            # The untrained critic scores ~0 everywhere: its bound (~0) is the baseline any trained
            # state must beat, so independent streams end near 0 rather than at an overfit negative.
            self.best_value = self.progress_bar = self._shared_validation()
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.history.append({"step": 0, "train_mi": 0.0, "valid_mi": self.best_value, "lr": self._lr_at(0)})
        # Fitted before training, so that training can stop once it cannot overtake the reference; by rank 0
        # alone, which decides when to stop for all ranks.
        if self.primary:
            self.selection.candidate()
        batches = BatchPrefetcher(self._training_batch, self.gen, enabled=self.prefetch)
        try:
            while self.step < self.total_steps and not self.stopped_early:
                for group in self.opt.param_groups:
                    group["lr"] = self._lr_at(self.step) * group["lr_ratio"]
                x, y, neg = batches.next()
                with autocast(self.precision, dev):
                    if self.ddp is not None:
                        tj, tm = self.ddp(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True), neg.to(dev))
                    else:
                        ax, ay = self.model.encode(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))
                        tj, tm = self.model.score_negatives(ax, ay, ay, neg.to(dev))
                # The bound, its log-mean-exp and the loss in float32, whatever the step's matrix products ran in.
                loss, value = self.estimator.loss(tj.float(), tm.float())
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.opt.step()
                acc += value.detach().double().cpu()
                acc_n += 1
                self.step += 1
                bar.update(1)
                if self.step % cfg.validate_every == 0 or self.step == self.total_steps:
                    train_mi = float(acc) / max(1, acc_n)
                    if self.distributed:
                        from .distributed import mean

                        train_mi = mean(train_mi)
                    acc.zero_()
                    acc_n = 0
                    valid_mi = self._shared_validation()
                    if not math.isfinite(train_mi) or not math.isfinite(valid_mi):
                        raise MinecliError(f"training diverged at step {self.step} (non-finite estimate); lower "
                                           "training.lr or use estimator.name=mine")
                    self.history.append({"step": self.step, "train_mi": train_mi, "valid_mi": valid_mi,
                                         "lr": self._lr_at(self.step - 1)})
                    if valid_mi > self.progress_bar:
                        self.bad_validations = 0
                        self.progress_bar = valid_mi + cfg.early_stopping_min_delta * self._validation_se()
                    else:
                        self.bad_validations += 1
                    if valid_mi > self.best_value:
                        self.best_value, self.best_step = valid_mi, self.step
                        self.since_lr_change = 0
                        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                        self._save("best")
                    else:
                        self.since_lr_change += 1
                        if (cfg.lr_schedule == "plateau" and self.since_lr_change >= cfg.lr_patience
                                and self.lr_scale > cfg.min_lr_ratio):
                            # A smaller step sharpens the critic before early stopping gives up.
                            self.lr_scale = max(cfg.min_lr_ratio, self.lr_scale * cfg.lr_decay)
                            self.since_lr_change = 0
                    bar.update(0, train=train_mi, valid=valid_mi, best=self.best_value)
                    pat = cfg.early_stopping_patience
                    if pat is not None and self.bad_validations >= pat and self.step >= cfg.min_steps:
                        self.stopped_early, self.stop_reason = True, "patience"
                    elif self._cannot_overtake_reference():
                        self.stopped_early, self.stop_reason = True, "reference"
                    if self.distributed:
                        from .distributed import broadcast

                        # Only rank 0 fitted the reference: its decision to stop holds for every rank.
                        self.stopped_early, self.stop_reason = broadcast((self.stopped_early, self.stop_reason))
                    if self.save_every and (self.step % self.save_every < cfg.validate_every):
                        batches.settle()  # the sampler's state as of the last step, not of the batch ahead
                        self._save("last")
        finally:
            batches.close()
            self._last_validation = None  # a validation's scores (on the device) serve its own stop decision only
            self.train_seconds += time.perf_counter() - t0
            bar.close()
            self._unwrap()
        self._save("last")
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.consider_reference(self._keep_training_if_significant())
        return self.history

    def _keep_training_if_significant(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Back to the untrained critic when the best trained state does not validate significantly above it
        (``ReferenceSelection.significant``); rank 0 decides for every rank. Returns the kept state's validation
        scores where rank 0 computed them, for the reference selection."""
        if self.best_step == 0 or not self.history or self.initial_state is None:
            return None
        revert, scores = False, None
        if self.primary:
            scores = self._score_protocol(self.model)
            revert = not self.selection.beats_untrained(self.best_value, scores, self.history[0]["valid_mi"])
        if self.distributed:
            from .distributed import broadcast

            revert = broadcast(revert)
        if not revert:
            return scores
        self.untrained_kept = (self.best_step, self.best_value)
        self.model.load_state_dict(self.initial_state)
        self.best_value, self.best_step = self.history[0]["valid_mi"], 0
        return None

    def _share_selection(self) -> None:
        """Rank 0's reference fit and selection on every rank, which all score with the selected critic."""
        if not self.distributed:
            return
        from .distributed import broadcast

        sel = self.selection
        if self.primary and sel.fit is not None:
            # Pickled through the CPU: every rank may sit on a GPU of its own.
            sel.fit.critic.cpu()
        sel.fit, sel.report = broadcast((sel.fit, sel.report))
        sel.tried = True
        if sel.fit is not None:
            sel.fit.critic.to(self.device)

    # ------------------------------------------------------------------ final estimate
    @torch.no_grad()
    def estimate(self, bank: FrameBank | None = None, seed_offset: int = 3) -> dict[str, Any]:
        """The bound on held-out frames with a bootstrap 95% interval and a permutation p-value.

        Distributed, every rank must call it after ``fit``: the ranks share the scoring of the test split
        and of the bias terms; rank 0 returns the result and the other ranks an empty dict.
        """
        bank = bank or self.test
        if bank is None:
            raise MinecliError("no test split to estimate on")
        if bank.n_utts < 2:
            raise MinecliError("the test split needs at least two utterances (marginals come from other utterances)")
        gen = torch.Generator().manual_seed(self.cfg.seed + seed_offset)
        k = self.est_cfg.eval_negatives
        from .runtime import lean_allocations

        bound = self.estimator.bound
        self._sync_buffers()
        with lean_allocations():
            negatives = gen.get_state()
            tj, tm = self.score_bank(bank, k, gen=gen, sharded=True)
            halves = self._half_sample_critics()
            half_scores = []
            for critic, _ in halves:
                # the same negatives as the selected critic's, so that test noise cancels in the correction
                same = torch.Generator()
                same.set_state(negatives)
                half_scores.append(self.score_bank(bank, k, gen=same, critic=critic, sharded=True))
            n_perm = self.cfg.null_permutations
            correction: dict[str, Any] = {}
            if self.primary:
                # The bootstrap and the permutation null stay on rank 0, which alone holds the scores; the
                # other ranks go on to the in-sample scoring below and wait there for rank 0.
                value = float(bound(tj, tm))
                units = split_units(bank, tj)
                boot = gen.get_state()
                # the resamples below read the bound hundreds of times: on each frame's log-mean-exp where it allows
                tm_r, half_r = self._for_resamples(tm), [(j, self._for_resamples(m)) for j, m in half_scores]
                lo, hi, method = bootstrap_interval(bound, bank, tj, tm_r, self.cfg.bootstrap, gen, units)
                if halves:
                    again = torch.Generator()
                    again.set_state(boot)  # the same resamples as the held-out bound's interval
                    c_value, c_lo, c_hi, c_method, terms = corrected_estimate(
                        bound, bank, [(tj, tm_r), *half_r], [share for _, share in halves], (value, lo, hi),
                        self.cfg.bootstrap, again, units)
                    if all(math.isfinite(v) for v in (c_value, c_lo, c_hi)):
                        value, lo, hi, method, correction = c_value, c_lo, c_hi, c_method, terms
                    else:
                        self.half_sample_note = (f"the half-sample correction was not finite (halves' bounds "
                                                 f"{terms['half_sample_bounds_nats']})")
                shortfall = self._posterior_shortfall()
                if shortfall is not None:
                    value, lo, hi, correction = posterior_corrected(shortfall, (value, lo, hi), correction)
                    if "half_sample_bounds_nats" not in correction:
                        self.half_sample_note = None  # corrected all the same
                p_value = permutation_p(bound, self.scorer, bank, tj, tm_r, n_perm, self.cx, self.cy, self.device,
                                        gen, units)
            # A generator of its own, so that the test-noise interval and the p-value are those of before.
            bias_gen = torch.Generator().manual_seed(self.cfg.seed + seed_offset + 100)
            in_sample, n_in = self.in_sample_bound(bias_gen)
            other = self.other_critic_bound(bank, bias_gen)
            if not self.primary:
                return {}
            ci, terms = honest_interval(value, (lo, hi), in_sample, [] if other is None else [other], n_in)
            if correction:
                # the held-out bound's own interval stays inside: the correction is an extrapolation
                ci = (min(ci[0], correction["ci95_held_out_nats"][0]), ci[1])
                terms["held_out_bound"] = list(correction["ci95_held_out_nats"])
        return {"mi_nats": value, "ci95_nats": ci, "ci95_test_noise_nats": (lo, hi), "ci_terms": terms,
                "half_sample": correction or None,
                "ci_method": method, "p_value": p_value,
                "p_value_text": p_value_text(p_value, n_perm), "n_permutations": n_perm,
                "permutation_unit": units.describe() if n_perm else None,
                "correlation_length_frames": units.correlation_length,
                "n_frames": bank.n_frames, "n_utts": bank.n_utts, "n_marginal": int(tm.numel())}

    def _for_resamples(self, tm: torch.Tensor) -> torch.Tensor:
        """``tm`` as the resamples of frames read it: each frame's log-mean-exp where the bound allows that."""
        return bounds.frame_log_mean_exp(tm) if self.estimator.marginal_log_mean_exp else tm

    def _posterior_shortfall(self) -> float | None:
        """The selected reference's expected shortfall under its model's posterior (a Dirichlet-smoothed table,
        one smoothed towards its rows' modes, Gaussian classes with a spread each), when the correction is on
        and the reference has one."""
        ref = self.reference
        if ref is None or not self.critic_cfg.half_sample_correction:
            return None
        shortfall = getattr(ref, "posterior_shortfall", lambda: None)()
        return shortfall if shortfall is not None and math.isfinite(shortfall) else None

    def _half_sample_critics(self) -> list[tuple[ReferenceCritic, float]]:
        """The selected reference refitted on two halves of the train split (rank 0 fits, every rank receives
        them), or none: no reference selected, the correction off, or too few train units."""
        if self.reference is None or not self.critic_cfg.half_sample_correction:
            return []
        halves: list[tuple[ReferenceCritic, float]] = []
        if self.primary:
            halves, self.half_sample_note = self.selection.half_fits()
        if self.distributed:
            from .distributed import broadcast

            for critic, _ in halves:
                critic.cpu()  # pickled through the CPU, as the selection is
            halves = broadcast(halves)
            for critic, _ in halves:
                critic.to(self.device)
        return halves

    def in_sample_bound(self, gen: torch.Generator, cap: int = 20_000) -> tuple[float | None, int]:
        """The scoring critic's bound on (up to ``cap`` frames of) its own train split, and the frames used
        (distributed: scored by every rank, the bound is rank 0's and NaN elsewhere)."""
        bank = self.train
        if bank.n_utts < 2:
            return None, 0
        if bank.n_frames > cap:  # whole utterances in random order, up to the cap
            order = torch.randperm(bank.n_utts, generator=gen)
            lengths = (bank.offsets[1:] - bank.offsets[:-1])[order]
            keep = max(2, int(torch.searchsorted(torch.cumsum(lengths, 0), torch.tensor(cap), right=True)))
            bank = bank.subset_utts(torch.sort(order[:keep]).values)
        tj, tm = self.score_bank(bank, self.est_cfg.eval_negatives, gen=gen, sharded=True)
        return self._bound(tj, tm), bank.n_frames

    def other_critic_bound(self, bank: FrameBank, gen: torch.Generator) -> float | None:
        """The test bound of the critic that was not selected (trained or closed-form), when there was a choice
        (distributed: scored by every rank, the bound is rank 0's and NaN elsewhere)."""
        fit, rep = self.selection.fit, self.reference_report
        if fit is None or rep is None or rep.get("cross_fit"):
            return None
        other = self.model if self.reference is not None else fit.critic
        tj, tm = self.score_bank(bank, self.est_cfg.eval_negatives, gen=gen, critic=other, sharded=True)
        return self._bound(tj, tm)
