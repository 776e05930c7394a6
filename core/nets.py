"""Encoder heads and the critic network T(x, y)."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU, "gelu": nn.GELU,
               "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    """An activation module by name."""
    return ACTIVATIONS[name]()


class EmbeddingHead(nn.Module):
    """Index stream ``[N, c, C]`` -> one embedding table per codebook -> ``[N, out_dim]``.

    The C tables live in one ``nn.Embedding`` with per-codebook offsets, so the lookup is one call.
    """

    def __init__(self, vocab_size: int, n_codebooks: int, context: int, dim: int,
                 combine: str = "concat", proj_dim: int | None = None) -> None:
        super().__init__()
        self.vocab_size, self.n_codebooks, self.context, self.combine = vocab_size, n_codebooks, context, combine
        self.table = nn.Embedding(vocab_size * n_codebooks, dim)
        nn.init.normal_(self.table.weight, std=1.0)
        self.register_buffer("offsets", torch.arange(n_codebooks, dtype=torch.long) * vocab_size, persistent=False)
        flat = context * dim * (n_codebooks if combine == "concat" else 1)
        self.proj = nn.Linear(flat, proj_dim) if proj_dim else None
        self.out_dim = proj_dim or flat

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        emb = self.table(idx + self.offsets)  # [N, c, C, E]
        if self.combine == "sum":
            emb = emb.sum(dim=2)
        out = emb.reshape(idx.shape[0], -1)
        return self.proj(out) if self.proj is not None else out


class ProjectionHead(nn.Module):
    """Float stream ``[N, c, D]`` -> flatten the context -> optional MLP projection -> ``[N, out_dim]``."""

    def __init__(self, dim: int, context: int, proj_dim: int | None, hidden: list[int],
                 act: str = "relu") -> None:
        super().__init__()
        flat = dim * context
        layers: list[nn.Module] = []
        prev = flat
        if proj_dim:
            for h in hidden:
                layers += [nn.Linear(prev, h), activation(act)]
                prev = h
            layers.append(nn.Linear(prev, proj_dim))
            prev = proj_dim
        self.net = nn.Sequential(*layers) if layers else None
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return self.net(flat) if self.net is not None else flat


class Critic(nn.Module):
    """T(x, y) = MLP(concat(head_x(x), head_y(y))).

    The first layer is split as W_x h_x + W_y h_y, so heads and first layer run once per batch and
    marginal pairs only add the cheap sum plus the rest of the MLP.
    """

    def __init__(self, head_x: nn.Module, head_y: nn.Module, hidden_dims: list[int], act: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        self.head_x, self.head_y = head_x, head_y
        dx, dy = int(head_x.out_dim), int(head_y.out_dim)
        first = hidden_dims[0] if hidden_dims else 1
        self.first_x = nn.Linear(dx, first)
        self.first_y = nn.Linear(dy, first, bias=False)
        rest: list[nn.Module] = []
        prev = first
        if hidden_dims:
            for i, h in enumerate(hidden_dims):
                if i > 0:
                    rest.append(nn.Linear(prev, h))
                if batch_norm:
                    rest.append(nn.BatchNorm1d(h))
                rest.append(activation(act))
                if dropout > 0:
                    rest.append(nn.Dropout(dropout))
                prev = h
            out = nn.Linear(prev, 1)
            rest.append(out)
        self.rest = nn.Sequential(*rest)
        self.batch_norm = batch_norm

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """First-layer contribution of x: ``[N, H]``."""
        return self.first_x(self.head_x(x))

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """First-layer contribution of y: ``[N, H]``."""
        return self.first_y(self.head_y(y))

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer activations of each side: ``[N, H]`` and ``[N, H]``."""
        return self.encode_x(x), self.encode_y(y)

    def pair_scores(self, ax: torch.Tensor, ay: torch.Tensor, ay_neg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of joint pairs ``[N]`` and of x_i with K marginal y's ``ay_neg [N, K, H]`` -> ``[N, K]``."""
        n = ax.shape[0]
        if ay_neg is None:
            return self._rest(ax + ay).reshape(n), None
        k = ay_neg.shape[1]
        marg_in = (ax[:, None, :] + ay_neg).reshape(n * k, -1)
        if self.batch_norm:
            # Compatibility with the original pipeline: joint and marginal normalised separately.
            return self._rest(ax + ay).reshape(n), self._rest(marg_in).reshape(n, k)
        both = self._rest(torch.cat([ax + ay, marg_in], dim=0)).reshape(-1)
        return both[:n], both[n:].reshape(n, k)

    def _rest(self, h: torch.Tensor) -> torch.Tensor:
        return self.rest(h) if len(self.rest) else h

    def forward(self, x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores for joint pairs and (optionally) K marginal pairs per row given by ``neg``."""
        ax, ay = self.encode(x, y)
        return self.pair_scores(ax, ay, ay[neg] if neg is not None else None)
