"""Encoder heads and the critic network T(x, y)."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU, "gelu": nn.GELU,
               "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    """An activation module by name."""
    return ACTIVATIONS[name]()


def hidden_stack(prev: int, hidden_dims: list[int], act: str, dropout: float, batch_norm: bool,
                 out_dim: int, first_linear: bool = True) -> list[nn.Module]:
    """Hidden layers (Linear, [BatchNorm], activation, [Dropout]) and a near-zero output Linear.

    ``first_linear=False`` leaves out the first Linear, for a critic that computes it per side.
    """
    layers: list[nn.Module] = []
    for i, h in enumerate(hidden_dims):
        if i > 0 or first_linear:
            layers.append(nn.Linear(prev, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = h
    out = nn.Linear(prev, out_dim)
    # Near-zero outputs at the start make every bound start at ~0, the no-information value.
    nn.init.normal_(out.weight, std=0.01)
    nn.init.zeros_(out.bias)
    return [*layers, out]


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
    """T(x, y) = MLP(concat(head_x(x), head_y(y))) [+ bilinear term] [+ quadratic term].

    The first layer is split as W_x h_x + W_y h_y, so heads and first layer run once per batch and
    marginal pairs only add the cheap sum plus the rest of the MLP. Two optional structured terms
    are added to the MLP's output, both computed from per-frame projections, so a marginal pair
    costs a few multiply-adds:

    - bilinear, rank ``bilinear_dim``: ``<U h_x, V h_y>``;
    - quadratic, rank ``quadratic_dim``: ``sum_k s_k (P h_x + Q h_y + b)_k^2`` with learned signs
      and scales ``s`` (zero at the start). It spans every quadratic form of the joint head outputs
      of that rank, which is the exact log density ratio of jointly Gaussian streams and the
      ``<mu_x, y>`` structure of a token-conditioned mean, both of which an MLP on concatenated
      inputs learns slowly and overfits on small corpora.
    """

    def __init__(self, head_x: nn.Module, head_y: nn.Module, hidden_dims: list[int], act: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False, bilinear_dim: int = 0,
                 quadratic_dim: int = 0) -> None:
        super().__init__()
        self.bilinear_dim, self.quadratic_dim = int(bilinear_dim), int(quadratic_dim)
        self.head_x, self.head_y = head_x, head_y
        dx, dy = int(head_x.out_dim), int(head_y.out_dim)
        first = hidden_dims[0] if hidden_dims else 1
        self.first_x = nn.Linear(dx, first)
        self.first_y = nn.Linear(dy, first, bias=False)
        rest = hidden_stack(first, hidden_dims, act, dropout, batch_norm, 1, first_linear=False) if hidden_dims else []
        self.rest = nn.Sequential(*rest)
        self.batch_norm = batch_norm
        self.hidden = first
        if self.bilinear_dim:
            self.bil_x = nn.Linear(dx, self.bilinear_dim, bias=False)
            self.bil_y = nn.Linear(dy, self.bilinear_dim, bias=False)
            # Start near zero so the bilinear term joins in as training finds it useful.
            nn.init.normal_(self.bil_x.weight, std=0.01)
            nn.init.normal_(self.bil_y.weight, std=0.01)
        if self.quadratic_dim:
            self.quad_x = nn.Linear(dx, self.quadratic_dim)
            self.quad_y = nn.Linear(dy, self.quadratic_dim, bias=False)
            # Zero scales keep the start at T ~ 0 while the projections already carry gradient.
            self.quad_scale = nn.Parameter(torch.zeros(self.quadratic_dim))

    def describe(self) -> str:
        """One line for summaries: the critic's form and structured terms."""
        terms = [f"bilinear rank {self.bilinear_dim}"] * bool(self.bilinear_dim) + \
            [f"quadratic rank {self.quadratic_dim}"] * bool(self.quadratic_dim)
        body = "mlp" if len(self.rest) else "linear"
        return f"{body} on concatenated head outputs" + (f" + {' + '.join(terms)}" if terms else "")

    def mlp_parameters(self) -> list[nn.Parameter]:
        """The MLP's parameters (first layer and the rest), for a separate learning rate."""
        return [*self.first_x.parameters(), *self.first_y.parameters(), *self.rest.parameters()]

    def _encode(self, h: torch.Tensor, side: str) -> torch.Tensor:
        parts = [getattr(self, f"first_{side}")(h)]
        if self.bilinear_dim:
            parts.append(getattr(self, f"bil_{side}")(h))
        if self.quadratic_dim:
            parts.append(getattr(self, f"quad_{side}")(h))
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """First-layer contribution of x and its structured-term factors: ``[N, H (+ B) (+ Q)]``."""
        return self._encode(self.head_x(x), "x")

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """First-layer contribution of y and its structured-term factors: ``[N, H (+ B) (+ Q)]``."""
        return self._encode(self.head_y(y), "y")

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded x and y: ``[N, H (+ B) (+ Q)]`` each."""
        return self.encode_x(x), self.encode_y(y)

    def _structured(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor | float:
        """Bilinear and quadratic terms; ``ex [N, E]`` with ``ey [N, E]`` or ``[N, K, E]``."""
        if ey.dim() == 3:
            ex = ex[:, None, :]
        b = self.bilinear_dim
        out: torch.Tensor | float = 0.0
        if b:
            out = (ex[..., :b] * ey[..., :b]).sum(-1)
        if self.quadratic_dim:
            out = out + ((ex[..., b:] + ey[..., b:]) ** 2) @ self.quad_scale
        return out

    def pair_scores(self, ax: torch.Tensor, ay: torch.Tensor, ay_neg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of joint pairs ``[N]`` and of x_i with K marginal y's ``ay_neg [N, K, .]`` -> ``[N, K]``."""
        n, hdim = ax.shape[0], self.hidden
        structured = bool(self.bilinear_dim or self.quadratic_dim)
        if structured:
            # split (one backward op that concatenates) instead of two slices (each zero-fills a copy).
            rest_dim = ax.shape[-1] - hdim
            ax, ex = ax.split([hdim, rest_dim], -1)
            ay, ey = ay.split([hdim, rest_dim], -1)
        if ay_neg is None:
            tj = self._rest(ax + ay).reshape(n)
            return (tj + self._structured(ex, ey) if structured else tj), None
        if structured:
            ay_neg, ey_neg = ay_neg.split([hdim, ay_neg.shape[-1] - hdim], -1)
        k = ay_neg.shape[1]
        marg_in = (ax[:, None, :] + ay_neg).reshape(n * k, -1)
        if self.batch_norm:
            # Compatibility with the original pipeline: joint and marginal normalised separately.
            tj, tm = self._rest(ax + ay).reshape(n), self._rest(marg_in).reshape(n, k)
        else:
            both = self._rest(torch.cat([ax + ay, marg_in], dim=0)).reshape(-1)
            tj, tm = both[:n], both[n:].reshape(n, k)
        if structured:
            return tj + self._structured(ex, ey), tm + self._structured(ex, ey_neg)
        return tj, tm

    def score_negatives(self, ax: torch.Tensor, ay: torch.Tensor, pool: torch.Tensor,
                        neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint scores of ``(ax, ay)`` ``[N]`` and of x_i with ``pool[neg[i, k]]`` ``[N, K]``."""
        # index_select's backward (index_add) is several times faster on the CPU than advanced indexing's.
        tj, tm = self.pair_scores(ax, ay, pool.index_select(0, neg.reshape(-1)).view(*neg.shape, pool.shape[1]))
        assert tm is not None
        return tj, tm

    def _rest(self, h: torch.Tensor) -> torch.Tensor:
        return self.rest(h) if len(self.rest) else h

    def forward(self, x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores for joint pairs and (optionally) K marginal pairs per row given by ``neg``."""
        ax, ay = self.encode(x, y)
        return self.score_negatives(ax, ay, ay, neg) if neg is not None else self.pair_scores(ax, ay, None)


class ClassifierCritic(nn.Module):
    """T(x, y) = log q(label | input) - log pi(label) for a stream of single tokens (the label side).

    With a label side of vocabulary V (one codebook, context 1), the optimal critic log p(x, y) /
    p(x) p(y) equals log p(label | input) - log p(label): a classifier's log posterior over the V
    tokens against their marginal. The input side's head and an MLP give V logits ``L``, a learned
    log prior ``log pi`` (started at the train split's token frequencies) and
    ``T = L[label] - logsumexp(L + log pi)``. Then ``E_Q[e^T] = sum_v pi_v q(v | input) / pi_v``
    stays near 1 by construction, so the partition term of the bound needs no learning, and a
    marginal pair costs one lookup. The reported number is still the bound of this critic on
    held-out pairs, a lower bound like any other critic's.
    """

    def __init__(self, head: nn.Module, vocab_size: int, label_side: str, hidden_dims: list[int],
                 act: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        if label_side not in ("x", "y"):
            raise ValueError(f"label_side must be 'x' or 'y', not {label_side!r}")
        self.label_side, self.vocab_size = label_side, int(vocab_size)
        self.head = head
        layers = hidden_stack(int(head.out_dim), hidden_dims, act, dropout, batch_norm, self.vocab_size)
        self.mlp = nn.Sequential(*layers)
        self.log_prior = nn.Parameter(torch.zeros(self.vocab_size))

    @torch.no_grad()
    def init_prior(self, labels: torch.Tensor) -> None:
        """Start the learned prior at the (add-half smoothed) token frequencies of ``labels``."""
        counts = torch.bincount(labels.reshape(-1).long().cpu(), minlength=self.vocab_size).float() + 0.5
        self.log_prior.copy_(counts.log().to(self.log_prior.device))

    def describe(self) -> str:
        """One line for summaries: which side's tokens the classifier predicts."""
        other = "y" if self.label_side == "x" else "x"
        return f"classifier of {self.label_side}'s {self.vocab_size} tokens given {other} (T = log q - log pi)"

    def mlp_parameters(self) -> list[nn.Parameter]:
        """The MLP's parameters, for a separate learning rate."""
        return list(self.mlp.parameters())

    def _scores(self, inp: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(self.head(inp))
        log_pi = torch.log_softmax(self.log_prior, 0)
        return logits - torch.logsumexp(logits + log_pi, dim=1, keepdim=True)

    def _label(self, idx: torch.Tensor) -> torch.Tensor:
        # Labels travel as one float column so both sides' encodings batch and index alike.
        return idx.reshape(idx.shape[0], -1)[:, :1].to(torch.get_default_dtype())

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """x's label ``[N, 1]`` or its log-ratio scores against every label ``[N, V]``."""
        return self._label(x) if self.label_side == "x" else self._scores(x)

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """y's label ``[N, 1]`` or its log-ratio scores against every label ``[N, V]``."""
        return self._label(y) if self.label_side == "y" else self._scores(y)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded x and y."""
        return self.encode_x(x), self.encode_y(y)

    def pair_scores(self, ax: torch.Tensor, ay: torch.Tensor, ay_neg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of joint pairs ``[N]`` and of x_i with K marginal y's ``ay_neg [N, K, .]`` -> ``[N, K]``."""
        if self.label_side == "y":
            tj = ax.gather(1, ay.long()).reshape(-1)
            tm = None if ay_neg is None else ax.gather(1, ay_neg[..., 0].long())
            return tj, tm
        lab = ax.long()
        tj = ay.gather(1, lab).reshape(-1)
        if ay_neg is None:
            return tj, None
        return tj, ay_neg.gather(2, lab[:, None, :].expand(-1, ay_neg.shape[1], 1)).squeeze(2)

    def score_negatives(self, ax: torch.Tensor, ay: torch.Tensor, pool: torch.Tensor,
                        neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint scores of ``(ax, ay)`` ``[N]`` and of x_i with ``pool[neg[i, k]]`` ``[N, K]``."""
        if self.label_side == "y":
            tj, tm = self.pair_scores(ax, ay, pool[neg])
            assert tm is not None
            return tj, tm
        # Look up one score per marginal pair instead of gathering whole [N, K, V] score rows.
        tj, _ = self.pair_scores(ax, ay, None)
        return tj, pool[neg, ax.long()]

    def forward(self, x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores for joint pairs and (optionally) K marginal pairs per row given by ``neg``."""
        ax, ay = self.encode(x, y)
        return self.score_negatives(ax, ay, ay, neg) if neg is not None else self.pair_scores(ax, ay, None)
