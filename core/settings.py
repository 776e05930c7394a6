"""Configuration of a training run: encoder heads, critic, estimator and optimisation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .params import param


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
                                       "a smoothed table for two token streams, over the token tuples seen for several tokens "
                                       "per frame); it gives the "
                                       "estimate unless the trained critic validates higher (at its best "
                                       "checkpoint and either side) by more than half a standard error, and "
                                       "training stops once it cannot catch up")
    half_sample_correction: bool = param(True, help="when the closed-form critic gives the estimate, refit it on two "
                                                    "halves of the train split and extrapolate its held-out bound "
                                                    "to unlimited training data (Richardson): the number is then no "
                                                    "longer a lower bound; the bound itself is reported beside it")
    reference_cross_fit: bool = param(True, help="estimate_mi only: when the closed-form critic gives the estimate "
                                                 "on data of at most 200,000 frames (float frames of at most 256 "
                                                 "values), refit it (no training) for each "
                                                 "other part of the data the size of the test split, so that every "
                                                 "sample is scored once by a fit that did not see it; the estimate "
                                                 "is the parts' frame-weighted mean")
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
    early_stopping_patience: int | None = param(10, help="stop after N validations without progress (see early_stopping_min_delta; null: never)")
    early_stopping_min_delta: float = param(
        0.25, help="a validation reading counts as progress for early stopping only when it beats the last one that "
                   "did by this many of that reading's standard errors (0: any rise); the best reading is kept either way")
    min_steps: int = param(500, help="never stop early before this many steps")
    seed: int = param(0, help="random seed (initialisation, sampling, validation protocol)")
    device: str = param("auto", help="'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'")
    threads: int | Literal["auto"] | None = param(
        "auto", help="torch CPU threads for training; auto (or null): one per 0.5 GFLOP of a step, at most the idle "
                     "CPUs less one for preparing batches and at most OMP_NUM_THREADS when set (1 on a GPU); a "
                     "busy core makes every extra thread wait, so on 2 cores auto is 1")
    precision: Literal["auto", "float32", "bf16"] = param(
        "auto", help="arithmetic of training steps: bf16 runs the heads' and the critic's matrix products in bfloat16 "
                     "(weights, optimiser, bound and loss stay float32); auto: bf16 on a CPU with AVX512-BF16 or AMX "
                     "and on a CUDA device with native bf16 when a float stream's window is at least 512 values "
                     "wide, else float32. Validation and every reported number are "
                     "scored in float32 either way")
    prefetch: bool | Literal["auto"] = param(
        "auto", help="prepare the next batch in a background thread while a step runs (the same batches as without, "
                     "so the same results); auto: on a GPU, or when a CPU beyond the training threads is idle")
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
        if not self.early_stopping_min_delta >= 0:
            raise ValueError(f"early_stopping_min_delta must be 0 or more, not {self.early_stopping_min_delta}")
        if self.steps is None and self.epochs is None:
            raise ValueError("set training.steps or training.epochs")
        # Zero steps would report the untrained critic's ~0 as "no dependence".
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"training.steps must be at least 1, not {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"training.epochs must be positive, not {self.epochs}")
        if self.threads is not None and self.threads != "auto" and (isinstance(self.threads, bool)
                                                                    or not isinstance(self.threads, int)
                                                                    or self.threads < 1):
            raise ValueError(f"training.threads must be a positive number of threads or auto, not {self.threads!r}")
        if not isinstance(self.prefetch, bool) and self.prefetch != "auto":
            raise ValueError(f"training.prefetch must be true, false or auto, not {self.prefetch!r}")
        if self.precision not in ("auto", "float32", "bf16"):
            raise ValueError(f"training.precision must be auto, float32 or bf16, not {self.precision!r}")
