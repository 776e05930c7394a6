"""The generic trainer: heads, critic and estimator from registry names; validation, early stopping,
checkpoints with exact resume, and the final held-out estimate with a bootstrap interval."""
from __future__ import annotations

import json
import math
import shutil
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file

from .checkpoint import CheckpointError, digests, read_state, read_tensors
from .data import FrameBank
from .errors import ConfigError, MinecliError
from .interfaces import Estimator
from .io import _umask, replace_dir, write_error, write_json
from .nets import ClassifierCritic, Critic
from .params import param
from .reference import ReferenceCritic, fit_references, reference_kind
from .registry import get_estimator_class, get_head_class
from .spec import StreamSpec

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class HeadConfig:
    """Which encoder head a stream gets, and its params."""

    name: str | None = param(None, help="head plugin; null picks 'embedding' for index and 'projection' for float streams")
    params: dict = param({}, help="the head's parameters (see 'minecli plugins show NAME')")


@dataclass(frozen=True)
class CriticConfig:
    """The MLP that scores concatenated head outputs."""

    hidden_dims: list[int] = param([128, 128], help="hidden layer sizes of the critic MLP")
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "tanh"] = param("relu", help="activation function")
    dropout: float = param(0.0, help="dropout rate after each hidden layer")
    batch_norm: bool = param(False, help="BatchNorm after hidden layers; normalises joint and marginal passes "
                                         "separately, which erases the signal: kept only for compatibility")
    bilinear_dim: int = param(0, help="rank of an extra bilinear term <U h_x, V h_y> added to the MLP score (0: none)")
    quadratic_dim: int | None = param(None, help="rank of an extra quadratic term sum_k s_k (P h_x + Q h_y + b)_k^2 "
                                                 "added to the MLP score, exact for Gaussian-like dependence; 0: none; "
                                                 "null: 64 for two float streams under form auto, else none")
    mlp_lr_scale: float = param(1.0, help="learning rate of the MLP relative to the heads and the structured terms; "
                                          "below 1 the structured terms fit first and the MLP adds what they miss")
    reference: bool = param(True, help="also fit the closed-form critic of the pairing's classical model on the train "
                                       "split (jointly Gaussian float streams, Gaussian classes for single tokens "
                                       "against floats, additive token means for several tokens against floats, "
                                       "a smoothed table for two token streams); it gives the "
                                       "estimate unless the trained critic validates higher by more than one "
                                       "standard error, and training stops once it cannot catch up")
    form: Literal["auto", "mlp", "classifier"] = param(
        "auto", help="mlp: T = MLP(concat(h_x, h_y)); classifier: T = log q(token | other side) - log pi(token) "
                     "for a stream of single tokens (one codebook, context 1); auto: classifier when a side is "
                     "such a stream with at most 256 tokens and no structured term is set, else mlp (with a "
                     "rank-64 quadratic term for two float streams, see quadratic_dim)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.bilinear_dim < 0 or (self.quadratic_dim or 0) < 0:
            raise ValueError("bilinear_dim and quadratic_dim must be 0 (off) or a positive rank")
        if not self.mlp_lr_scale > 0:
            raise ValueError(f"mlp_lr_scale must be positive, not {self.mlp_lr_scale}")
        if any(h < 1 for h in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive sizes, not {self.hidden_dims}")


@dataclass(frozen=True)
class EstimatorConfig:
    """Which bound is trained and reported."""

    name: str = param("mine", help="estimator plugin: mine, dv, nwj, infonce, smile, ...")
    params: dict = param({}, help="the estimator's parameters (e.g. ema_decay for mine, tau for smile)")
    n_negatives: int = param(4, help="marginal samples per positive pair during training")
    eval_negatives: int = param(64, help="marginal samples per frame for validation and the final test estimate")

    def __post_init__(self) -> None:
        if self.n_negatives < 1 or self.eval_negatives < 1:
            raise ValueError("n_negatives and eval_negatives must be at least 1")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, validation and stopping."""

    steps: int | None = param(3000, help="training steps (ignored when epochs is set)")
    epochs: float | None = param(None, help="passes over the train frames; sets steps = epochs * frames / pairs per step")
    batch_size: int = param(512, help="segments per step; pairs per step = batch_size * segment_length")
    segment_length: int = param(1, help="consecutive frames per segment (random crops anywhere in an utterance)")
    lr: float = param(1e-3, help="Adam learning rate")
    weight_decay: float = param(0.0, help="AdamW weight decay")
    lr_schedule: Literal["constant", "cosine", "plateau"] = param(
        "plateau", help="plateau: multiply lr by lr_decay after lr_patience validations without improvement; "
                        "cosine: over the planned steps; constant")
    lr_decay: float = param(0.3, help="factor applied to lr on a plateau")
    lr_patience: int = param(3, help="validations without improvement before lr is lowered (plateau)")
    min_lr_ratio: float = param(0.01, help="lr never goes below lr * min_lr_ratio")
    grad_clip: float | None = param(10.0, help="clip the gradient norm (null: no clipping)")
    validate_every: int = param(100, help="validate every N steps")
    valid_frames: int = param(20000, help="frames of the validation split used for the fixed validation protocol")
    valid_negatives: int = param(16, help="marginal samples per validation frame (the test uses estimator.eval_negatives)")
    early_stopping_patience: int | None = param(10, help="stop after N validations without improvement (null: never)")
    min_steps: int = param(500, help="never stop early before this many steps")
    seed: int = param(0, help="random seed (initialisation, sampling, validation protocol)")
    device: str = param("auto", help="'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'")
    threads: int | None = param(1, help="torch CPU threads; 1 is fastest for small critics on few cores (null: torch default)")
    bootstrap: int = param(400, help="bootstrap resamples for the confidence interval")
    null_permutations: int = param(99, help="shuffled pairings for the permutation p-value (0: skip)")
    progress: bool = param(True, help="show progress bars on stderr")

    def __post_init__(self) -> None:
        if self.batch_size < 2 and self.segment_length < 2:
            raise ValueError("a step needs at least two pairs: raise batch_size")
        if self.segment_length < 1 or self.validate_every < 1 or self.valid_frames < 2:
            raise ValueError("segment_length, validate_every and valid_frames must be positive")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, not {self.lr}")
        if self.steps is None and self.epochs is None:
            raise ValueError("set training.steps or training.epochs")
        # Zero steps would report the untrained critic's ~0 as "no dependence".
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"training.steps must be at least 1, not {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"training.epochs must be positive, not {self.epochs}")


@dataclass
class MIResult:
    """The outcome of one estimate: the number, its interval, and how it was obtained."""

    mi_nats: float
    ci95_nats: tuple[float, float]
    estimator: str
    lower_bound: bool
    n_test_frames: int
    n_test_utts: int
    ci_method: str
    p_value: float | None
    best_step: int
    steps_run: int
    stopped_early: bool
    seconds: float
    stop_reason: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    entropy: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    pairs_per_second: float = 0.0
    critic: str = ""
    reference: dict[str, Any] | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mi_bits(self) -> float:
        """The estimate in bits."""
        return self.mi_nats / LOG2

    @property
    def ci95_bits(self) -> tuple[float, float]:
        """The 95% interval in bits."""
        return (self.ci95_nats[0] / LOG2, self.ci95_nats[1] / LOG2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["mi_bits"] = self.mi_bits
        d["ci95_bits"] = list(self.ci95_bits)
        d["ci95_nats"] = list(self.ci95_nats)
        return d

    def __str__(self) -> str:
        lo, hi = self.ci95_nats
        return (f"I(X;Y) = {self.mi_nats:.4f} nats ({self.mi_bits:.4f} bits), 95% CI [{lo:.4f}, {hi:.4f}] nats, "
                f"{self.estimator}, {self.n_test_frames} test frames")


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"training.device: unknown device {name!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device is {name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    return dev


def build_head(spec: StreamSpec, context: int, cfg: HeadConfig, side: str) -> torch.nn.Module:
    """Build one side's encoder head from the registry."""
    name = cfg.name or ("embedding" if spec.kind == "index" else "projection")
    cls = get_head_class(name)
    if spec.kind not in cls.accepts:
        other = "embedding" if spec.kind == "index" else "projection"
        raise ConfigError(f"{side}.head.name: head '{name}' does not accept {spec.kind} streams; use '{other}'")
    return cls().build(spec, context, cls.parse(cfg.params, f"{side}.head.params"))


def build_critic(spec_x: StreamSpec, spec_y: StreamSpec, cx: int, cy: int, head_x: HeadConfig,
                 head_y: HeadConfig, critic: CriticConfig) -> Critic | ClassifierCritic:
    """The critic T(x, y) for two streams."""
    label = classifier_side(spec_x, spec_y, cx, cy, critic)
    if critic.batch_norm and label is None:
        warnings.warn("critic.batch_norm normalises joint and marginal pairs separately, which erases the "
                      "dependence the critic must detect; estimates will be biased towards 0", stacklevel=2)
    if label is not None:
        other = "y" if label == "x" else "x"
        specs, contexts, heads = {"x": spec_x, "y": spec_y}, {"x": cx, "y": cy}, {"x": head_x, "y": head_y}
        if heads[label] != HeadConfig():
            warnings.warn(f"{label}.head is not used: the critic is a classifier over {label}'s tokens (critic.form "
                          f"{critic.form}); set critic.form=mlp to encode {label} with its head", stacklevel=2)
        return ClassifierCritic(build_head(specs[other], contexts[other], heads[other], other),
                                specs[label].vocab_size, label, list(critic.hidden_dims), critic.activation,
                                critic.dropout, critic.batch_norm)
    return Critic(build_head(spec_x, cx, head_x, "x"), build_head(spec_y, cy, head_y, "y"),
                  list(critic.hidden_dims), critic.activation, critic.dropout, critic.batch_norm,
                  critic.bilinear_dim, quadratic_rank(spec_x, spec_y, critic))


# On two float streams the MLP on concatenated inputs learns products of x and y features slowly and
# overfits them; a rank-64 quadratic term beside it (same learning rate) was higher on Gaussians and
# on two of three real speech feature pairs (benchmarks/RESULTS.md), and lower on tokens vs mel.
AUTO_QUADRATIC_DIM = 64


def quadratic_rank(spec_x: StreamSpec, spec_y: StreamSpec, critic: CriticConfig) -> int:
    """The quadratic term's rank: as set, or under form auto 64 for two float streams and 0 otherwise."""
    if critic.quadratic_dim is not None:
        return critic.quadratic_dim
    both_float = spec_x.kind == "float" and spec_y.kind == "float"
    return AUTO_QUADRATIC_DIM if critic.form == "auto" and both_float and not critic.bilinear_dim else 0


# A V-way softmax per frame costs O(V) on both passes: on a 1,024-token Zipf corpus it ran 3x slower
# per step on the CPU than the MLP and fitted rare tokens worse, so auto stops at small vocabularies.
AUTO_CLASSIFIER_VOCAB = 256


def classifier_side(spec_x: StreamSpec, spec_y: StreamSpec, cx: int, cy: int, critic: CriticConfig) -> str | None:
    """Which side's tokens a classifier critic predicts ('x', 'y'), or None for the MLP critic."""
    if critic.form == "mlp":
        return None
    single = {side: spec.vocab_size for side, spec, c in (("x", spec_x, cx), ("y", spec_y, cy))
              if spec.kind == "index" and spec.n_codebooks == 1 and c == 1}
    structured = critic.bilinear_dim or critic.quadratic_dim
    if critic.form == "classifier":
        if not single:
            raise ConfigError("critic.form: 'classifier' needs a stream of single tokens (index, one codebook, "
                              "context 1) on one side; use form 'mlp' or 'auto'")
        if structured:
            raise ConfigError("critic.form: 'classifier' has no bilinear or quadratic term; set bilinear_dim and "
                              "quadratic_dim to 0 or use form 'mlp'")
    else:
        single = {k: v for k, v in single.items() if v <= AUTO_CLASSIFIER_VOCAB}
        if not single or structured:
            return None
    # Predict the smaller vocabulary; on a tie, y (its scores then come from x, the cheaper gather).
    return min(single, key=lambda side: (single[side], side != "y"))


def block_length(n: int) -> int:
    """Block length of the moving-block bootstrap for n correlated frames: n^(1/3), the usual rate."""
    return max(2, round(n ** (1 / 3)))


def block_bootstrap_indices(n: int, block: int, gen: torch.Generator, size: int | None = None) -> torch.Tensor:
    """A moving-block bootstrap sample of n frames: random runs of ``block`` consecutive indices, ``size`` (n) in all."""
    block, size = min(block, n), size or n
    starts = torch.randint(0, n - block + 1, (-(-size // block),), generator=gen)
    return (starts[:, None] + torch.arange(block)).reshape(-1)[:size]


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


class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr,
                            dynamic_ncols=True, leave=False, disable=None)

    def update(self, n: int = 1, **post: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if post:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in post.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class _ReferenceFit:
    """The best closed-form candidate and its scores on the validation protocol."""

    critic: ReferenceCritic
    valid_nats: float
    kind: str
    tj: torch.Tensor
    tm: torch.Tensor


class Trainer:
    """Trains a critic on train frames, validates on a fixed protocol, estimates on test frames."""

    def __init__(self, spec_x: StreamSpec, spec_y: StreamSpec, train: FrameBank, valid: FrameBank,
                 test: FrameBank | None = None, *, context_x: int = 1, context_y: int = 1,
                 head_x: HeadConfig | None = None, head_y: HeadConfig | None = None,
                 critic: CriticConfig | None = None, estimator: EstimatorConfig | None = None,
                 training: TrainConfig | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
                 save_every: int | None = None, resume: bool = True, config_doc: dict[str, Any] | None = None) -> None:
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
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)

        self.device = resolve_device(self.cfg.device)
        torch.manual_seed(self.cfg.seed)
        self.model = build_critic(spec_x, spec_y, self.cx, self.cy, self.head_x, self.head_y, self.critic_cfg).to(self.device)
        if isinstance(self.model, ClassifierCritic):
            self.model.init_prior(train.x if self.model.label_side == "x" else train.y)
        est_cls = get_estimator_class(self.est_cfg.name)
        self.estimator: Estimator = est_cls(est_cls.parse(self.est_cfg.params, "estimator.params"))
        mlp = self.model.mlp_parameters()
        in_mlp = {id(p) for p in mlp}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in in_mlp], "lr_ratio": 1.0},
                  {"params": mlp, "lr_ratio": self.critic_cfg.mlp_lr_scale}]
        # foreach: one kernel per step over all parameters (torch's CPU default is a loop per tensor,
        # which cost about 12% of a step of the default critic).
        self.opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.cfg.lr,
                                     weight_decay=self.cfg.weight_decay, foreach=True)
        self.gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        self.pairs_per_step = self.cfg.batch_size * self.cfg.segment_length
        if self.cfg.epochs is not None:
            self.total_steps = max(1, int(math.ceil(self.cfg.epochs * train.n_frames / self.pairs_per_step)))
        else:
            self.total_steps = int(self.cfg.steps or 1)
        self.step = 0
        self.best_value = -math.inf
        self.best_step = 0
        self.bad_validations = 0
        self.lr_scale = 1.0
        self.since_lr_change = 0
        self.stopped_early = False
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self._reference_fit: _ReferenceFit | None = None
        self._reference_tried = False
        self.stop_reason: str | None = None
        self.reference_report: dict[str, Any] | None = None
        self._valid_protocol = self._make_valid_protocol()
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

    def _make_valid_protocol(self) -> tuple[FrameBank, torch.Tensor]:
        """A fixed subset of validation utterances and fixed negatives, so validations compare."""
        gen = torch.Generator().manual_seed(self.cfg.seed + 2)
        bank = self.valid
        if bank.n_frames > self.cfg.valid_frames:
            order = torch.randperm(bank.n_utts, generator=gen)
            lengths = (bank.offsets[1:] - bank.offsets[:-1])[order]
            keep = int(torch.searchsorted(torch.cumsum(lengths, 0), torch.tensor(self.cfg.valid_frames)))
            bank = bank.subset_utts(torch.sort(order[: max(2, keep)]).values)
        frames = torch.arange(bank.n_frames)
        neg = bank.other_utterance_frames(gen, frames, self.cfg.valid_negatives)
        return bank, neg

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score_bank(self, bank: FrameBank, neg: torch.Tensor | int, chunk: int = 8192,
                   gen: torch.Generator | None = None,
                   critic: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic scores of every frame's joint pair ``[N]`` and its marginal pairs ``[N, K]``.

        ``neg`` is either fixed negative indices ``[N, K]`` or K: then negatives from other
        utterances are drawn chunk by chunk with `gen`, so their index arrays never exist for the
        whole split at once (they cost far more memory than the scores).
        """
        critic = critic or self.scorer
        was_training = critic.training
        critic.eval()
        dev = self.device
        ay_parts = []
        for s in range(0, bank.n_frames, chunk):
            frames = torch.arange(s, min(s + chunk, bank.n_frames))
            y = bank.y[bank.windows(frames, self.cy)]
            ay_parts.append(critic.encode_y(y.to(dev)))
        ay = torch.cat(ay_parts)
        tj_parts, tm_parts = [], []
        k = neg if isinstance(neg, int) else neg.shape[1]
        rows = max(1, chunk // max(1, k))
        for s in range(0, bank.n_frames, rows):
            frames = torch.arange(s, min(s + rows, bank.n_frames))
            x = bank.x[bank.windows(frames, self.cx)]
            ax = critic.encode_x(x.to(dev))
            nf = bank.other_utterance_frames(gen, frames, k) if isinstance(neg, int) else neg[frames]
            tj, tm = critic.score_negatives(ax, ay[frames.to(dev)], ay, nf.to(dev))
            tj_parts.append(tj.float().cpu())
            tm_parts.append(tm.float().cpu())
        critic.train(was_training)
        return torch.cat(tj_parts), torch.cat(tm_parts)

    @property
    def scorer(self) -> torch.nn.Module:
        """The critic that gives the estimate: the reference critic when it was selected, else the trained one."""
        return self.reference if self.reference is not None else self.model

    @property
    def reference(self) -> ReferenceCritic | None:
        """The closed-form critic when it was selected to give the estimate, else None."""
        fit, rep = self._reference_fit, self.reference_report
        return fit.critic if fit is not None and rep is not None and rep["selected"] else None

    def describe_critic(self) -> str:
        """One line naming the critic that gives the estimate (and what it beat)."""
        rep = self.reference_report
        if rep is None:
            return self.model.describe()
        if rep["selected"]:
            return (f"{rep['critic']}; validation {rep['valid_nats']:.3f} nats against {rep['trained_valid_nats']:.3f} "
                    f"for the trained {self.model.describe()} (which would need a lead of one standard error, "
                    f"{rep['difference_se_nats']:.3f})")
        return (f"{self.model.describe()} (the {rep['kind']} reference validated lower: {rep['valid_nats']:.3f} "
                f"nats against {rep['trained_valid_nats']:.3f})")

    def validate(self) -> float:
        """The trained critic's bound on the fixed validation protocol."""
        bank, neg = self._valid_protocol
        tj, tm = self.score_bank(bank, neg, critic=self.model)
        return float(self.estimator.bound(tj, tm))

    def _reference_candidate(self) -> _ReferenceFit | None:
        """The best validated closed-form critic of this pairing (fitted once), or None when none applies."""
        if not self._reference_tried:
            self._reference_tried = True
            kind = reference_kind(self.spec_x, self.spec_y, self.cx, self.cy) if self.critic_cfg.reference else None
            if kind is not None:
                gen = torch.Generator().manual_seed(self.cfg.seed + 5)
                bank, neg = self._valid_protocol
                for cand in fit_references(kind, self.train, self.cx, self.cy, self.spec_x, self.spec_y, gen):
                    cand = cand.to(self.device)
                    tj, tm = self.score_bank(bank, neg, critic=cand)
                    value = float(self.estimator.bound(tj, tm))
                    if math.isfinite(value) and (self._reference_fit is None or value > self._reference_fit.valid_nats):
                        self._reference_fit = _ReferenceFit(cand, value, kind, tj, tm)
        return self._reference_fit

    def consider_reference(self) -> None:
        """Select the pairing's closed-form critic unless the trained one validates higher by more than one SE."""
        self.reference_report = None
        fit = self._reference_candidate()
        if fit is None:
            return
        margin = self._validation_se(fit)
        # One-standard-error rule: the trained critic's best validation is a maximum over many
        # checkpoints, so it reads high; the reference (a handful of parameters) is kept unless the
        # trained critic beats it by more than the standard error of their difference.
        # The same rule against the untrained critic (T ~ 0, the simplest of all): a reference that
        # beats it by less than that error is fitting noise, as on independent streams.
        untrained = self.history[0]["valid_mi"] if self.history else 0.0
        selected = fit.valid_nats >= self.best_value - margin and fit.valid_nats > untrained + margin
        self.reference_report = {"kind": fit.kind, "critic": fit.critic.describe(), "valid_nats": fit.valid_nats,
                                 "trained_valid_nats": self.best_value, "difference_se_nats": margin,
                                 "selected": selected}
        if selected:
            self._save_reference()

    def _validation_se(self, fit: _ReferenceFit, b: int = 200) -> float:
        """Bootstrap standard error of (trained - reference) bound on the validation protocol, paired by frame."""
        bank, neg = self._valid_protocol
        tj_a, tm_a = self.score_bank(bank, neg, critic=self.model)
        tj_b, tm_b = fit.tj, fit.tm
        draws, _ = self._resamples(bank, b, torch.Generator().manual_seed(self.cfg.seed + 6))
        diffs = [float(self.estimator.bound(tj_a[i], tm_a[i]) - self.estimator.bound(tj_b[i], tm_b[i])) for i in draws]
        return float(np.std(diffs)) if len(diffs) > 1 else 0.0

    def _cannot_overtake_reference(self) -> bool:
        """True when the reference validates higher and the trained critic, improving at its pace over the last
        ``early_stopping_patience`` validations, would still be below it at the last step."""
        pat = self.cfg.early_stopping_patience
        fit = self._reference_fit
        if fit is None or pat is None or self.step < self.cfg.min_steps or fit.valid_nats <= self.best_value:
            return False
        span = pat * self.cfg.validate_every
        earlier = [h["valid_mi"] for h in self.history if h["step"] <= self.step - span]
        if not earlier:
            return False
        pace = (self.best_value - max(earlier)) / span
        return self.best_value + pace * (self.total_steps - self.step) < fit.valid_nats

    def _save_reference(self) -> None:
        """The selected reference critic's tensors beside the checkpoints, so the estimate can be re-scored."""
        if self.ckpt_dir is None or self.reference is None or self.reference_report is None:
            return
        with self._staged("reference") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.reference.state_dict().items()},
                      str(tmp / "model.safetensors"))
            write_json(tmp / "state.json", {**self.reference_report, "config": self.config_doc})

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
        if self.ckpt_dir is not None and self.ckpt_dir.is_dir():
            # Staging folders of a save that a kill interrupted; the run owns the folder now (the
            # output lock), so none of them belongs to a live save.
            for stale in self.ckpt_dir.glob(".*.*"):
                if stale.is_dir() and stale.name.split(".")[1] in ("last", "best", "reference"):
                    shutil.rmtree(stale, ignore_errors=True)
        if self.resume and self.ckpt_dir is not None:
            self._try_resume()
        cfg = self.cfg
        dev = self.device
        bar = _Progress(self.total_steps, self.step, cfg.progress, "training")
        acc = torch.zeros((), dtype=torch.float64)
        acc_n = 0
        t0 = time.perf_counter()
        self.model.train()
        if self.step == 0 and not self.history:
            # The untrained critic scores ~0 everywhere: its bound (~0) is the baseline any trained
            # state must beat, so independent streams end near 0 rather than at an overfit negative.
            self.best_value = self.validate()
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.history.append({"step": 0, "train_mi": 0.0, "valid_mi": self.best_value, "lr": self._lr_at(0)})
        # Fitted before training, so that training can stop once it cannot overtake the reference.
        self._reference_candidate()
        try:
            while self.step < self.total_steps and not self.stopped_early:
                for group in self.opt.param_groups:
                    group["lr"] = self._lr_at(self.step) * group["lr_ratio"]
                frames = self.train.sample_segments(self.gen, cfg.batch_size, cfg.segment_length)
                neg = self._negatives_in_batch(cfg.batch_size, cfg.segment_length, self.est_cfg.n_negatives)
                x, y = self.train.gather(frames, self.cx, self.cy)
                ax, ay = self.model.encode(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))
                tj, tm = self.model.score_negatives(ax, ay, ay, neg.to(dev))
                loss, value = self.estimator.loss(tj, tm)
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
                    acc.zero_()
                    acc_n = 0
                    valid_mi = self.validate()
                    if not math.isfinite(train_mi) or not math.isfinite(valid_mi):
                        raise MinecliError(f"training diverged at step {self.step} (non-finite estimate); lower "
                                           "training.lr or use estimator.name=mine")
                    self.history.append({"step": self.step, "train_mi": train_mi, "valid_mi": valid_mi,
                                         "lr": self._lr_at(self.step - 1)})
                    if valid_mi > self.best_value:
                        self.best_value, self.best_step, self.bad_validations = valid_mi, self.step, 0
                        self.since_lr_change = 0
                        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                        self._save("best")
                    else:
                        self.bad_validations += 1
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
                    if self.save_every and (self.step % self.save_every < cfg.validate_every):
                        self._save("last")
        finally:
            self.train_seconds += time.perf_counter() - t0
            bar.close()
        self._save("last")
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.consider_reference()
        return self.history

    # ------------------------------------------------------------------ final estimate
    @torch.no_grad()
    def estimate(self, bank: FrameBank | None = None, seed_offset: int = 3) -> dict[str, Any]:
        """The bound on held-out frames with a bootstrap 95% interval and a permutation p-value."""
        bank = bank or self.test
        if bank is None:
            raise MinecliError("no test split to estimate on")
        if bank.n_utts < 2:
            raise MinecliError("the test split needs at least two utterances (marginals come from other utterances)")
        gen = torch.Generator().manual_seed(self.cfg.seed + seed_offset)
        k = self.est_cfg.eval_negatives
        from .runtime import lean_allocations

        with lean_allocations():
            tj, tm = self.score_bank(bank, k, gen=gen)
            value = float(self.estimator.bound(tj, tm))
            lo, hi, method = self._bootstrap(bank, tj, tm, gen)
            p_value = self._permutation_p(bank, tj, tm, gen)
        return {"mi_nats": value, "ci95_nats": (lo, hi), "ci_method": method, "p_value": p_value,
                "n_frames": bank.n_frames, "n_utts": bank.n_utts, "n_marginal": int(tm.numel())}

    @staticmethod
    def _resamples(bank: FrameBank, b: int, gen: torch.Generator) -> tuple[Iterator[torch.Tensor], str]:
        """``b`` bootstrap resamples of the bank's frame indices, and how they are drawn."""
        n = bank.n_frames
        # Resampling whole utterances keeps their internal correlation in the interval.
        by_utt = bank.n_utts >= 10 and bank.n_utts < n
        # Fewer than 10 utterances are too few to resample, but their frames are still correlated in
        # time: resampling blocks of consecutive frames keeps that correlation in the interval.
        block = block_length(n) if (not by_utt and bank.n_utts < n) else 1
        cap = 200_000

        def draw() -> Iterator[torch.Tensor]:
            for _ in range(b):
                if by_utt:
                    yield bank.frames_of(torch.randint(0, bank.n_utts, (bank.n_utts,), generator=gen))
                elif block > 1:
                    yield block_bootstrap_indices(n, block, gen, size=min(n, cap))
                else:
                    yield torch.randint(0, n, (min(n, cap),), generator=gen)

        method = "utterances" if by_utt else (f"blocks of {block} consecutive frames" if block > 1 else "frames")
        return draw(), method

    def _bootstrap(self, bank: FrameBank, tj: torch.Tensor, tm: torch.Tensor,
                   gen: torch.Generator) -> tuple[float, float, str]:
        b = self.cfg.bootstrap
        if b < 10:
            v = float(self.estimator.bound(tj, tm))
            return v, v, "none"
        draws, method = self._resamples(bank, b, gen)
        arr = np.asarray([float(self.estimator.bound(tj[idx], tm[idx])) for idx in draws])
        return float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975)), method

    def _permutation_p(self, bank: FrameBank, tj: torch.Tensor, tm: torch.Tensor, gen: torch.Generator) -> float | None:
        """p-value of 'no dependence': the bound on real pairs against pairs shuffled across utterances."""
        n_perm = self.cfg.null_permutations
        if not n_perm:
            return None
        sub = torch.randperm(bank.n_frames, generator=gen)[:20000]
        sub = torch.sort(sub).values
        obs = float(self.estimator.bound(tj[sub], tm[sub]))
        critic = self.scorer
        was = critic.training
        critic.eval()
        dev = self.device
        x = bank.x[bank.windows(sub, self.cx)].to(dev)
        ax = critic.encode_x(x)
        null_count = 0
        for _ in range(n_perm):
            other = bank.other_utterance_frames(gen, sub, 1)[:, 0]
            ay = critic.encode_y(bank.y[bank.windows(other, self.cy)].to(dev))
            t_null, _ = critic.pair_scores(ax, ay, None)
            if float(self.estimator.bound(t_null.float().cpu(), tm[sub])) >= obs:
                null_count += 1
        critic.train(was)
        return (1 + null_count) / (1 + n_perm)

    # ------------------------------------------------------------------ checkpoints
    @contextmanager
    def _staged(self, which: str) -> Iterator[Path]:
        """A temporary folder beside ``checkpoints/<which>`` that replaces it in one rename when the block ends."""
        assert self.ckpt_dir is not None
        tmp: Path | None = None
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{which}.", dir=self.ckpt_dir))
            yield tmp
            # mkdtemp and safetensors make owner-only entries; checkpoints follow the umask like results.
            mask = _umask()
            for f in tmp.iterdir():
                os.chmod(f, 0o666 & ~mask)
            os.chmod(tmp, 0o777 & ~mask)
            replace_dir(tmp, self.ckpt_dir / which)
        except BaseException as exc:
            # A failed save leaves the previous checkpoint as it was and no half-written folder beside it.
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise write_error(self.ckpt_dir / which, exc) from None
            raise

    def _save(self, which: str) -> None:
        if self.ckpt_dir is None:
            return
        with self._staged(which) as tmp:
            self._write_checkpoint(which, tmp)

    def _write_checkpoint(self, which: str, tmp: Path) -> None:
        """Weights and state of checkpoint `which` (best or last) into the staged folder `tmp`."""
        state = self.model.state_dict() if which == "last" or self.best_state is None else self.best_state
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
        if which == "last":
            opt = self.opt.state_dict()
            tensors: dict[str, torch.Tensor] = {}
            scalars: dict[str, dict[str, Any]] = {}
            for pid, pstate in opt["state"].items():
                for key, val in pstate.items():
                    if torch.is_tensor(val):
                        tensors[f"opt.{pid}.{key}"] = val.detach().cpu().contiguous()
                    else:
                        scalars.setdefault(str(pid), {})[key] = val
            tensors["rng.torch"] = torch.get_rng_state()
            tensors["rng.sampler"] = self.gen.get_state()
            if self.best_state is not None:
                for k, v in self.best_state.items():
                    tensors[f"best.{k}"] = v.detach().cpu().contiguous()
            save_file(tensors, str(tmp / "trainer.safetensors"))
            doc = {"step": self.step, "total_steps": self.total_steps, "best_value": self.best_value,
                   "best_step": self.best_step, "bad_validations": self.bad_validations,
                   "lr_scale": self.lr_scale, "since_lr_change": self.since_lr_change,
                   "stopped_early": self.stopped_early, "stop_reason": self.stop_reason, "history": self.history,
                   "estimator_state": self.estimator.state_dict(), "param_groups": opt["param_groups"],
                   "opt_scalars": scalars, "train_seconds": self.train_seconds, "config": self.config_doc,
                   "sha256": digests(tmp)}
            write_json(tmp / "state.json", doc)
        else:
            write_json(tmp / "state.json", {"step": self.best_step, "valid_mi": self.best_value,
                                            "config": self.config_doc})

    def _try_resume(self) -> None:
        assert self.ckpt_dir is not None
        last = self.ckpt_dir / "last"
        candidates = [f for f in (last, last.with_name("last.old")) if (f / "state.json").exists()]
        if not candidates:
            return
        problems = []
        for folder in candidates:
            try:
                doc = read_state(folder)
                self._check_config(folder, doc)
                model, tensors = read_tensors(folder, self.model.state_dict(), doc)
            except CheckpointError as exc:
                # The folder before the last save (left by an interrupted swap) may still be whole.
                problems.append(str(exc))
                continue
            for problem in problems:
                print(f"minecli: warning: {problem}; using the earlier checkpoint {folder}", file=sys.stderr)
            self._restore(folder, doc, model, tensors)
            return
        raise MinecliError(f"{problems[0]}; no earlier checkpoint is readable. Delete {self.ckpt_dir} to start "
                           "training afresh, or run with output.resume=false")

    def _check_config(self, last: Path, doc: dict[str, Any]) -> None:
        saved_cfg = doc.get("config") or {}
        if self.config_doc and saved_cfg and _model_part(saved_cfg) != _model_part(self.config_doc):
            raise MinecliError(f"checkpoint {last} was made with a different model or data config; use a new "
                               "output.dir, or output.resume=false to start over")

    def _restore(self, last: Path, doc: dict[str, Any], model: dict[str, torch.Tensor],
                 tensors: dict[str, torch.Tensor]) -> None:
        """Continue from a checkpoint whose files read_state and read_tensors have validated."""
        self.model.load_state_dict(model)
        opt_state: dict[int, dict[str, Any]] = {}
        for key, val in tensors.items():
            if key.startswith("opt."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = val
        for pid, sc in doc.get("opt_scalars", {}).items():
            opt_state.setdefault(int(pid), {}).update(sc)
        try:
            self.opt.load_state_dict({"state": opt_state, "param_groups": doc["param_groups"]})
        except (ValueError, KeyError, TypeError) as exc:
            raise MinecliError(f"checkpoint {last / 'state.json'} does not fit this model ({exc}); delete "
                               f"{self.ckpt_dir} to start training afresh, or run with output.resume=false") from None
        torch.set_rng_state(tensors["rng.torch"])
        self.gen.set_state(tensors["rng.sampler"])
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None
        self.step, self.best_value = int(doc["step"]), float(doc["best_value"])
        self.best_step, self.bad_validations = int(doc["best_step"]), int(doc["bad_validations"])
        self.lr_scale = float(doc.get("lr_scale", 1.0))
        self.since_lr_change = int(doc.get("since_lr_change", 0))
        self.stopped_early = bool(doc["stopped_early"])
        self.stop_reason = doc.get("stop_reason")
        self.history = list(doc["history"])
        self.estimator.load_state_dict(doc.get("estimator_state", {}))
        self.train_seconds = float(doc.get("train_seconds", 0.0))
        print(f"minecli: resuming from {last} at step {self.step}", file=sys.stderr)


def _model_part(doc: dict[str, Any]) -> Any:
    """The parts of a config that must match for a checkpoint to be resumable."""
    keep = {k: doc.get(k) for k in ("x", "y", "pairing", "critic", "estimator")}
    tr = dict(doc.get("training") or {})
    keep["training"] = {k: tr.get(k) for k in ("batch_size", "segment_length", "seed")}
    return json.loads(json.dumps(keep, sort_keys=True, default=str))


def entropy_report(spec_x: StreamSpec, spec_y: StreamSpec, bank: FrameBank) -> dict[str, Any]:
    """Plug-in entropies of index streams on a split and log(vocab), the ceilings of I(X;Y)."""
    from .baselines import plugin_entropy

    out: dict[str, Any] = {}
    for side, spec, t in (("x", spec_x, bank.x), ("y", spec_y, bank.y)):
        if spec.kind == "index":
            out[side] = {"plugin_entropy_nats": float(plugin_entropy(t.numpy())),
                         "log_vocab_nats": spec.log_vocab_nats}
    return out


def result_warnings(mi: float, ci: tuple[float, float], entropy: dict[str, Any], n_marginal: int,
                    estimator: Estimator, n_negatives: int) -> list[str]:
    """Warnings a researcher should see before quoting the number."""
    out = []
    # A context window's ceiling is its distinct frames times H(frame), when the caller gave it:
    # comparing a window's MI with one frame's entropy would warn of a ceiling that is not there.
    ents = [v.get("ceiling_nats", v["plugin_entropy_nats"]) for v in entropy.values()]
    windows = any(v.get("source_frames_per_sample", 1) > 1 for v in entropy.values())
    if ents and mi >= 0.9 * min(ents):
        what = ("min(H(X window), H(Y window)) <= distinct frames x plug-in H(frame)" if windows
                else "min(H(X), H(Y))")
        out.append(f"the estimate {mi:.3f} nats is near {what} = {min(ents):.3f} nats (plug-in entropy of "
                   "the test split): the true MI may be higher than a bound this close to the ceiling can show")
    if n_marginal > 1 and mi >= 0.8 * math.log(n_marginal):
        out.append(f"the estimate is near log(marginal samples) = {math.log(n_marginal):.2f} nats, about what a "
                   "DV-type bound can certify from this many samples; use more test data")
    ceiling = estimator.ceiling_nats(n_negatives)
    if ceiling is not None and mi >= 0.9 * ceiling:
        out.append(f"{estimator.name} is capped at {ceiling:.3f} nats with {n_negatives} negatives and the estimate "
                   "is near that cap; raise estimator.eval_negatives or use mine")
    if ci[0] <= 0.0 <= ci[1]:
        out.append("the 95% interval includes 0: no dependence is detected at this sample size")
    return out
