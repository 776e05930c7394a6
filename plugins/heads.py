"""Built-in encoder heads: embedding (index streams), projection and identity (float streams)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from minecli import Head, StreamSpec, hookimpl, param


@dataclass(frozen=True)
class EmbeddingParams:
    dim: int = param(64, help="embedding size per codebook and context frame (the seed's x_embedding_dim)")
    combine: Literal["concat", "sum"] = param("concat", help="join codebooks by concatenation or by sum")
    proj_dim: int | None = param(None, help="optional linear projection of the flattened embeddings")

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be positive, not {self.dim}")


class Embedding(Head):
    """One learned table per codebook; context frames are concatenated."""

    name = "embedding"
    summary = "learned embedding per codebook for index streams (context frames concatenated)"
    Params = EmbeddingParams
    accepts = ("index",)

    def build(self, spec: StreamSpec, context: int, params: Any) -> Any:
        from minecli.core.nets import EmbeddingHead

        return EmbeddingHead(spec.vocab_size, spec.n_codebooks, context, params.dim, params.combine,
                             params.proj_dim)


@dataclass(frozen=True)
class ProjectionParams:
    dim: int | None = param(64, help="output size (the seed's x_proj_dim); null keeps the flattened input")
    hidden: list[int] = param([], help="hidden layers of the projection MLP (empty: one linear layer)")
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "tanh"] = param("relu", help="activation between layers")


class Projection(Head):
    """Flatten the context window and project it with a linear layer or a small MLP."""

    name = "projection"
    summary = "linear or small-MLP projection of float frames (context flattened)"
    Params = ProjectionParams
    accepts = ("float",)

    def build(self, spec: StreamSpec, context: int, params: Any) -> Any:
        from minecli.core.nets import ProjectionHead

        return ProjectionHead(spec.dim, context, params.dim, list(params.hidden), params.activation)


class Identity(Head):
    """Pass float frames through unchanged (context flattened); the critic's first layer projects."""

    name = "identity"
    summary = "float frames passed through as they are (context flattened)"
    accepts = ("float",)

    def build(self, spec: StreamSpec, context: int, params: Any) -> Any:
        from minecli.core.nets import ProjectionHead

        return ProjectionHead(spec.dim, context, None, [], "relu")


@hookimpl
def register_heads(register):
    for cls in (Embedding, Projection, Identity):
        register(cls)
