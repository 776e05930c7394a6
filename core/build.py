"""Building the critic and its heads from the registry, and choosing the device."""
from __future__ import annotations

import warnings

import torch

from . import devices
from .errors import ConfigError
from .nets import ClassifierCritic, Critic
from .registry import get_head_class
from .settings import CriticConfig, HeadConfig
from .spec import StreamSpec


def resolve_device(name: str) -> torch.device:
    """Training's device: 'auto' means CUDA when present, else the CPU (the rules of extraction's device)."""
    return devices.resolve_device(name, "training.device")


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
