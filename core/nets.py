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
    marginal pairs only add the cheap sum plus the rest of the MLP. An optional bilinear term
    <U h_x, V h_y> of rank ``bilinear_dim`` is added to the MLP's output: products of x and y
    features are what an MLP on concatenated inputs learns slowest, and a bilinear term gets them
    directly (it is exact for the log density ratio of jointly Gaussian streams).
    """

    def __init__(self, head_x: nn.Module, head_y: nn.Module, hidden_dims: list[int], act: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False, bilinear_dim: int = 0) -> None:
        super().__init__()
        self.bilinear_dim = int(bilinear_dim)
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
            # Near-zero scores at the start make every bound start at ~0, the no-information value.
            nn.init.normal_(out.weight, std=0.01)
            nn.init.zeros_(out.bias)
            rest.append(out)
        self.rest = nn.Sequential(*rest)
        self.batch_norm = batch_norm
        self.hidden = first
        if self.bilinear_dim:
            self.bil_x = nn.Linear(dx, self.bilinear_dim, bias=False)
            self.bil_y = nn.Linear(dy, self.bilinear_dim, bias=False)
            # Start near zero so the bilinear term joins in as training finds it useful.
            nn.init.normal_(self.bil_x.weight, std=0.01)
            nn.init.normal_(self.bil_y.weight, std=0.01)

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """First-layer contribution of x (and its bilinear factor): ``[N, H (+ B)]``."""
        h = self.head_x(x)
        return torch.cat([self.first_x(h), self.bil_x(h)], 1) if self.bilinear_dim else self.first_x(h)

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """First-layer contribution of y (and its bilinear factor): ``[N, H (+ B)]``."""
        h = self.head_y(y)
        return torch.cat([self.first_y(h), self.bil_y(h)], 1) if self.bilinear_dim else self.first_y(h)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer activations of each side: ``[N, H]`` and ``[N, H]``."""
        return self.encode_x(x), self.encode_y(y)

    def pair_scores(self, ax: torch.Tensor, ay: torch.Tensor, ay_neg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of joint pairs ``[N]`` and of x_i with K marginal y's ``ay_neg [N, K, H]`` -> ``[N, K]``."""
        n = ax.shape[0]
        if self.bilinear_dim:
            hdim = self.hidden
            bx, by = ax[:, hdim:], ay[:, hdim:]
            ax, ay = ax[:, :hdim], ay[:, :hdim]
            bil_j = (bx * by).sum(-1)
        if ay_neg is None:
            tj = self._rest(ax + ay).reshape(n)
            return (tj + bil_j if self.bilinear_dim else tj), None
        if self.bilinear_dim:
            bil_m = torch.einsum("nb,nkb->nk", bx, ay_neg[..., hdim:])
            ay_neg = ay_neg[..., :hdim]
        k = ay_neg.shape[1]
        marg_in = (ax[:, None, :] + ay_neg).reshape(n * k, -1)
        if self.batch_norm:
            # Compatibility with the original pipeline: joint and marginal normalised separately.
            tj, tm = self._rest(ax + ay).reshape(n), self._rest(marg_in).reshape(n, k)
        else:
            both = self._rest(torch.cat([ax + ay, marg_in], dim=0)).reshape(-1)
            tj, tm = both[:n], both[n:].reshape(n, k)
        if self.bilinear_dim:
            return tj + bil_j, tm + bil_m
        return tj, tm

    def _rest(self, h: torch.Tensor) -> torch.Tensor:
        return self.rest(h) if len(self.rest) else h

    def forward(self, x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores for joint pairs and (optionally) K marginal pairs per row given by ``neg``."""
        ax, ay = self.encode(x, y)
        return self.pair_scores(ax, ay, ay[neg] if neg is not None else None)
