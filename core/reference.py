"""Closed-form reference critics, fitted on the train split and validated against the trained critic.

Each is the exact log density ratio log p(x,y)/p(x)p(y) of a classical model fitted by maximum
likelihood (with a little regularisation):

- ``gaussian`` (two float streams): x and y jointly Gaussian. In canonical coordinates
  (u_k, v_k of unit variance with correlation rho_k) the ratio is, up to a constant,
  sum_k rho_k/(4(1+rho_k)) (u_k+v_k)^2 - rho_k/(4(1-rho_k)) (u_k-v_k)^2, with the sample rho_k and
  two shrunk versions of them (``shrunk_correlations``). Beside it, copula.py fits
  the same on each dimension's normal scores (Gaussian copula) and a Student-t copula.
- ``lda`` (single tokens against a float stream): the float side is Gaussian within each token's
  class with a shared covariance: T(k, y) = log N(y; mu_k, S) - log sum_j pi_j N(y; mu_j, S).
- ``spread`` (beside each ``lda`` fit at one ridge): the same classes, each with an isotropic spread of
  its own in LDA's whitened space, shrunk towards the pooled one for rare tokens. It reports its
  posterior's expected shortfall (class_posterior.py): with many rare tokens the halves' 1/n law
  recovers too little of it.
- ``student-t classes`` (student_classes.py, beside ``lda``): the same classes with independent
  Student-t noise per dimension, for heavy-tailed features.
- ``diag classes`` (diag_classes.py, beside ``lda``): the same classes with a Gaussian spread per token and
  dimension, for classes that differ in shape. Where a dimension's marginal is far from Gaussian, copula.py
  fits these classes on each dimension's normal scores too; for several tokens per frame, the classes over
  the token tuples seen in training (``TupleClassReference``) sit beside ``additive``.
- ``additive`` (several tokens per frame against a float stream): each token adds a mean vector,
  shrunk by pseudo-frames or per direction of the means' scatter.
- ``table`` (tokens on both sides): the add-alpha smoothed joint table, each conditional table
  smoothed towards the other side's marginal, towards each row's most frequent token, and, over one
  vocabulary, towards "the same token"; each prior's pseudo-counts at the maximum of its
  Dirichlet-multinomial evidence. With several tokens per frame the rows (or columns) are the token
  tuples seen in training. A table smoothed towards a fixed centre (uniform, or a marginal) is the mean
  of a Dirichlet posterior, whose expected shortfall it reports (``posterior_shortfall``).

A reference critic is a fixed function, so its held-out bound is as valid a lower bound as the
trained critic's. The trainer scores each candidate on the same validation protocol as the trained
critic and keeps the reference unless the trained critic, at its curve's level, validates higher by more
than half a standard error (and only when it beats the untrained critic significantly: selection.py): on small corpora
these models need far fewer samples than a neural critic when they fit the data, and they lose the
validation by far when they do not.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .class_posterior import ClassPosterior, class_shortfall
from .data import FrameBank
from .spec import StreamSpec

# Fitting cost grows with D^2 frames + D^3 and LDA's encoding with V D: beyond these the reference is
# skipped (a neural critic is the tool there anyway).
MAX_FLOAT_WIDTH = 2048
MAX_LDA_VOCAB = 8192  # S3 tokens (6,561) included
FIT_FRAMES = 100_000
RIDGES = (1e-4, 1e-3, 1e-2, 1e-1)
# A within-class covariance of hundreds of dims from a few thousand frames is noisy. LDA whitens with
# C + r I (RIDGES and 1.0) and with (1 - a) C + a mean(diag C) I (LDA_SHRINKAGE). A ridge also shrinks
# the whitened noise by about 1/(1 + r), a critic less confident than the class model: on real speech
# (phones vs log-mel) the ridge of 1 validates at 0.87 nats and the unit-scale fits below 0. A convex
# mix keeps the noise at the scale the model assumes: on the original pipeline's corpus shape at
# 10,000 frames (513 dims, isotropic noise) a = 0.9-1 reaches 1.77 nats, the ridge of 1 1.61.
LDA_RIDGES = (*RIDGES, 1.0)
LDA_SHRINKAGE = (0.5, 0.9, 1.0)
# A table's Dirichlet pseudo-counts are fitted by their evidence (type-II maximum likelihood) over this
# grid of per-row totals, not validated one by one: among 6 add-alpha and 6 marginal candidates, 1,000
# validation frames picked one 0.02 nats short of the generating alpha's Bayes fit on a 16x16 table,
# while the evidence recovered that alpha within 25% at 12 draws.
PSEUDO_COUNT_GRID = tuple(10.0 ** (k / 10) for k in range(-20, 71))  # 0.01 .. 1e7
MAX_ADDITIVE_CELLS = 65_536  # token positions x vocabulary: the per-position mean tables...
#: the recipe prefix of the class candidates over token tuples, and the frames each seen tuple needs on average
TUPLE_RECIPE = "tuples: "
TUPLE_MIN_FRAMES = 4
MAX_ADDITIVE_TABLE = 1 << 24  # ...times the float width: 128 MB of float64 while fitting
# Token tuples in the additive reference's marginal: at 10,000 frames of 4 codebooks x 16 tokens nearly
# every frame has its own tuple, and keeping all of them (not the 4,096 most frequent) lifted the bound
# by 0.02-0.08 nats at three seeds.
MAX_MIXTURE = 16384
ADDITIVE_PSEUDO_FRAMES = (1.0, 10.0)
ADDITIVE_RIDGES = (1e-3, 1e-1)
SPREAD_RIDGE = 1e-3  # the class-spread candidates reuse the LDA fit at this ridge
SPREAD_PSEUDO_FRAMES = (0.5, 3.0)
#: logits per block of a class mixture's log-normaliser (at least 64 frames a block): one [frames, classes] matrix
#: went through memory three times; a block of 2^18 stays in cache (7,000 frames against 7,000 seen tuples: 4x
#: faster; 2,000 against 2,048 tokens: 5x)
MIXTURE_CELLS = 1 << 18


def standardise(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 frames scaled to zero mean and unit variance (the statistics in float64)."""
    var, mean = torch.var_mean(f.double(), 0)
    scale = var.sqrt().clamp_min(1e-8)
    return ((f - mean.float()) / scale.float()), mean, scale


def mixture_log_norm(feats: torch.Tensor, weights_t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """log sum_s exp(feats @ weights_t + bias)_s for each frame: ``[N, 1]``, in blocks of MIXTURE_CELLS logits."""
    if feats.shape[0] == 0:
        return feats.new_zeros(0, 1)
    rows = max(64, MIXTURE_CELLS // max(1, weights_t.shape[1]))
    return torch.cat([torch.logsumexp(torch.addmm(bias, block, weights_t), 1, keepdim=True)
                      for block in feats.split(rows)])


def _inv_sqrts(c: torch.Tensor, ridges: Sequence[float] = (), shrinkages: Sequence[float] = ()) -> list[torch.Tensor]:
    """(C + r I)^(-1/2) for each ridge r, then ((1 - a) C + a mean(diag C) I)^(-1/2) for each shrinkage a (a
    covariance shrunk towards its mean variance, at unit scale), of a correlation-scaled covariance C.

    All of them share C's eigenvectors: one eigendecomposition serves every candidate (a 513-dim
    covariance costs ~30 ms per decomposition, eight per LDA fit before).
    """
    lam, v = torch.linalg.eigh(c)
    return [(v * s.clamp_min(1e-12).rsqrt()) @ v.T for s in _spectra(lam, ridges, shrinkages)]


def _spectra(lam: torch.Tensor, ridges: Sequence[float], shrinkages: Sequence[float]) -> list[torch.Tensor]:
    """The eigenvalues of C + r I for each ridge r, then of (1 - a) C + a mean(diag C) I for each shrinkage a,
    given C's eigenvalues ``lam``."""
    mu = float(lam.mean())  # = mean(diag C)
    return [lam + r for r in ridges] + [(1 - a) * lam + a * mu for a in shrinkages]


class ReferenceCritic(nn.Module):
    """A fixed critic scored from per-frame encodings by ``_t(ex, ey)``, which broadcasts over pairs."""

    #: whether its held-out bound may be corrected for the train split's size (its shortfall falls as c/n, or is
    #: known from its posterior): the half-sample and posterior corrections apply
    extrapolates = True

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for summaries."""
        raise NotImplementedError

    def recipe(self) -> str:
        """How it was fitted, without the values fitted (a rank, a fitted prior): the same recipe on part of
        the train frames is the same procedure at a smaller n."""
        return self.describe()

    def pair_scores(self, ax: torch.Tensor, ay: torch.Tensor, ay_neg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of joint pairs ``[N]`` and of x_i with marginal y encodings ``ay_neg [N, K, ...]`` -> ``[N, K]``."""
        return self._t(ax, ay), (None if ay_neg is None else self._t(ax.unsqueeze(1), ay_neg))

    def score_negatives(self, ax: torch.Tensor, ay: torch.Tensor, pool: torch.Tensor,
                        neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint scores ``[N]`` and scores of x_i with ``pool[neg[i, k]]`` ``[N, K]``."""
        return self._t(ax, ay), self._t(ax.unsqueeze(1), pool[neg])


class TokenFrameCritic(ReferenceCritic):
    """A class critic whose token side encodes to its class's terms (``_tokens``) and float side to the frame's
    (``_floats``): T is their dot product plus each side's last term (a per-token and a per-frame constant)."""

    token_side: str

    def _tokens(self, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _floats(self, f: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """The token's terms, or the frame's."""
        return self._tokens(x) if self.token_side == "x" else self._floats(x)

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """The token's terms, or the frame's, as encode_x."""
        return self._tokens(y) if self.token_side == "y" else self._floats(y)

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        return (ex[..., :-1] * ey[..., :-1]).sum(-1) + ex[..., -1] + ey[..., -1]


class ClassPosteriorCritic(TokenFrameCritic):
    """A Gaussian class critic (LDA's classes, or a spread each) that reports its posterior's expected shortfall
    from the fit's statistics (class_posterior.py); none where the fit left none (the additive reference)."""

    posterior: ClassPosterior | None = None

    def posterior_shortfall(self) -> float | None:
        """The held-out bound's expected shortfall under the model's posterior."""
        return class_shortfall(self)


class GaussianReference(ReferenceCritic):
    """The jointly Gaussian critic in canonical coordinates."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, shift_a: torch.Tensor, shift_b: torch.Tensor,
                 rho: torch.Tensor, ridge: float, shrinkage: str = "") -> None:
        super().__init__()
        self.register_buffer("a", a.float())             # [r, Dx]: u = a x - shift_a
        self.register_buffer("b", b.float())             # [r, Dy]
        self.register_buffer("shift_a", shift_a.float())
        self.register_buffer("shift_b", shift_b.float())
        self.register_buffer("c_sum", (rho / (4 * (1 + rho))).float())
        self.register_buffer("c_diff", (-rho / (4 * (1 - rho))).float())
        self.register_buffer("c0", (-0.5 * torch.log1p(-rho**2)).sum().float())
        self.rank, self.ridge, self.shrinkage = int(rho.numel()), ridge, shrinkage

    def fit_terms(self) -> str:
        """Rank, ridge and correlation shrinkage, for summaries."""
        return f"{self.rank} canonical pairs, ridge {self.ridge:g}" + (f", {self.shrinkage}" if self.shrinkage else "")

    def recipe(self) -> str:
        """Ridge and kind of correlation shrinkage (its share is fitted)."""
        how = "pooled" if "pooled" in self.shrinkage else "edge" if "removed" in self.shrinkage else "ml"
        return f"gaussian, ridge {self.ridge:g}, {how}"

    def describe(self) -> str:
        """One line for summaries."""
        return f"gaussian reference (closed form: {self.fit_terms()})"

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """Canonical variates of x ``[N, r]``."""
        return x.reshape(x.shape[0], -1) @ self.a.T - self.shift_a

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """Canonical variates of y ``[N, r]``."""
        return y.reshape(y.shape[0], -1) @ self.b.T - self.shift_b

    def _t(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return ((u + v) ** 2) @ self.c_sum + ((u - v) ** 2) @ self.c_diff + self.c0


class LdaReference(ClassPosteriorCritic):
    """Gaussian classes with a shared covariance for one side's single tokens.

    With z the whitened float frame and m_k the whitened class means, T(k, y) = z.m_k - |m_k|^2/2
    - log sum_j pi_j exp(z.m_j - |m_j|^2/2): a dot product plus a per-token and a per-frame term,
    so each side encodes to ``[N, r + 1]`` and a marginal pair costs one dot product.
    """

    def __init__(self, token_side: str, means: torch.Tensor, log_prior: torch.Tensor, proj: torch.Tensor,
                 shift: torch.Tensor, ridge: float, rule: str = "floor", scaled: bool = False) -> None:
        super().__init__()
        self.token_side, self.rule = token_side, rule
        self.register_buffer("means", means.float())         # [V, r] whitened means in the span of the means
        self.register_buffer("log_prior", log_prior.float())  # [V]
        self.register_buffer("proj", proj.float())           # [r, D]: z = proj f - shift
        self.register_buffer("shift", shift.float())
        self.vocab, self.ridge, self.scaled = int(means.shape[0]), ridge, scaled

    def describe(self) -> str:
        """One line for summaries."""
        r = self.means.shape[1]
        dirs = {"floor": f"{r} directions above the noise floor", "pooled": f"all {r} directions, one shrinkage",
                "edge": f"{r} directions above the Marchenko-Pastur edge of noise"}[self.rule]
        return (f"lda reference (closed form: {self.vocab} Gaussian classes of {self.token_side}'s tokens "
                f"with a shared covariance, {self.whitening}, {dirs})")

    def recipe(self) -> str:
        """Whitening and direction rule (the number of directions kept is fitted)."""
        return f"lda, {self.whitening}, {self.rule}"

    @property
    def whitening(self) -> str:
        """How the shared covariance was regularised before whitening."""
        return f"shrunk {self.ridge:g} of the way to its mean variance" if self.scaled else f"ridge {self.ridge:g}"

    def _tokens(self, idx: torch.Tensor) -> torch.Tensor:
        k = idx.reshape(-1)
        half = -0.5 * (self.means**2).sum(1)
        return torch.cat([self.means[k], half[k, None]], 1)

    def _floats(self, f: torch.Tensor) -> torch.Tensor:
        z = f.reshape(f.shape[0], -1) @ self.proj.T - self.shift
        return torch.cat([z, -mixture_log_norm(z, self.means.T, self.log_prior - 0.5 * (self.means**2).sum(1))], 1)


class SpreadReference(ClassPosteriorCritic):
    """Gaussian classes with a spread of their own: token k's frames scatter by s_k^2 in LDA's whitened space.

    T(k, z) = log N(z; m_k, s_k^2 I) - log sum_j pi_j N(z; m_j, s_j^2 I). With the class means in the
    r discriminant directions, |z - m_k|^2 = |z_r - m_k|^2 + |z_rest|^2, so a token encodes to
    ``[m_k / s_k^2, -1 / (2 s_k^2), c_k]`` and a frame to ``[z_r, |z|^2, -log p(z)]``: a marginal pair
    still costs one dot product.
    """

    def __init__(self, token_side: str, means: torch.Tensor, var: torch.Tensor, log_prior: torch.Tensor,
                 proj: torch.Tensor, shift: torch.Tensor, full_proj: torch.Tensor, full_shift: torch.Tensor,
                 pseudo: float, rule: str) -> None:
        super().__init__()
        self.token_side = token_side
        d = full_proj.shape[0]
        self.register_buffer("means", means.float())             # [V, r]
        self.register_buffer("inv_var", (1.0 / var).float())     # [V]
        self.register_buffer("const", (-0.5 * (means**2).sum(1) / var - 0.5 * d * var.log()).float())
        self.register_buffer("log_prior", log_prior.float())
        self.register_buffer("proj", proj.float())               # [r, D]
        self.register_buffer("shift", shift.float())
        self.register_buffer("full_proj", full_proj.float())     # [d, D]: the whole whitened frame
        self.register_buffer("full_shift", full_shift.float())
        self.vocab, self.pseudo = int(means.shape[0]), pseudo
        self.rule = rule  # the direction rule of the LDA fit it sits beside

    def describe(self) -> str:
        """One line for summaries."""
        return (f"class-spread reference (closed form: {self.vocab} Gaussian classes of {self.token_side}'s "
                f"tokens, each with its own spread, {self.pseudo:g} pooled pseudo-frames)")

    def recipe(self) -> str:
        """The LDA rule it sits beside and the pseudo-frames."""
        return f"spread, {self.rule}, {self.pseudo:g}"

    def _tokens(self, idx: torch.Tensor) -> torch.Tensor:
        k = idx.reshape(-1)
        return torch.cat([self.means[k] * self.inv_var[k, None], -0.5 * self.inv_var[k, None], self.const[k, None]], 1)

    def _floats(self, f: torch.Tensor) -> torch.Tensor:
        flat = f.reshape(f.shape[0], -1)
        z = flat @ self.proj.T - self.shift
        sq = ((flat @ self.full_proj.T - self.full_shift) ** 2).sum(1, keepdim=True)
        feats = torch.cat([z, sq], 1)
        weights = torch.cat([self.means * self.inv_var[:, None], -0.5 * self.inv_var[:, None]], 1)
        return torch.cat([feats, -mixture_log_norm(feats, weights.T, self.const + self.log_prior)], 1)

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        return (ex[..., :-2] * ey[..., :-2]).sum(-1) + ex[..., -2] * ey[..., -2] + ex[..., -1] + ey[..., -1]


class AdditiveReference(LdaReference):
    """Several tokens at once (codebooks, context windows): each adds its own vector to the frame's mean.

    y = sum_j E_j[x_j] + Gaussian noise with a shared covariance. In the noise's whitened coordinates a
    token tuple encodes to its summed mean m(x) like an LDA class, and the frame's normaliser is a
    mixture over the tuples seen most often in training: T(x, z) = z.m(x) - |m(x)|^2/2
    - log sum_s w_s exp(z.m_s - |m_s|^2/2). Any fixed T gives a valid DV bound; the mixture is the
    closest cheap stand-in for the exact marginal.
    """

    def __init__(self, token_side: str, tables: torch.Tensor, means: torch.Tensor, log_prior: torch.Tensor,
                 proj: torch.Tensor, shift: torch.Tensor, ridge: float, shrink: float, rule: str = "pseudo") -> None:
        super().__init__(token_side, means, log_prior, proj, shift, ridge, rule)
        self.register_buffer("tables", tables.float())  # [J, V, d] per position's whitened mean offsets
        self.shrink = shrink

    def describe(self) -> str:
        """One line for summaries."""
        j = int(self.tables.shape[0])
        how = (f"{self.shrink:g} pseudo-frames" if self.rule == "pseudo" else
               "each position's means shrunk per direction, " + {"floor": "directions above the noise floor",
                                                                  "edge": "directions above the Marchenko-Pastur "
                                                                          "edge of noise"}[self.rule])
        return (f"additive reference (closed form: {j} tokens of {self.token_side} each add a mean, shared "
                f"covariance, mixture over {self.vocab} seen tuples, {how})")

    def recipe(self) -> str:
        """Whitening, shrinkage rule and pseudo-frames (the tuples seen and directions kept are fitted)."""
        return f"additive, {self.whitening}, {self.rule}, {self.shrink:g}"

    def _tokens(self, idx: torch.Tensor) -> torch.Tensor:
        k = idx.reshape(idx.shape[0], -1)
        m = self.tables[torch.arange(k.shape[1]), k].sum(1)  # [N, d]
        return torch.cat([m, -0.5 * (m**2).sum(1, keepdim=True)], 1)


class TableReference(ReferenceCritic):
    """Smoothed joint counts of two token streams, stored sparsely so that any vocabulary fits.

    Every smoothing used here has the form T(x, y) = log(c_xy + u_x + v_y + d [x = y]) + a_x + b_y:
    the joint counts ``c`` plus pseudo-counts from a prior (uniform, one side's marginal, or "the same
    token, else ..."), normalised per row and column. Only the cells seen in training are kept (sorted
    keys ``x * Vy + y`` with their counts), so a table over S3's 6,561 tokens costs memory per training
    frame, not per cell.
    """

    def __init__(self, keys: torch.Tensor, counts: torch.Tensor, u: torch.Tensor, v: torch.Tensor, d: float,
                 a: torch.Tensor, b: torch.Tensor, alpha: float, towards: str = "uniform",
                 target: torch.Tensor | None = None, rows: str | None = "x") -> None:
        super().__init__()
        self.register_buffer("keys", keys.long())          # [S] sorted x * Vy + y of the seen cells
        self.register_buffer("counts", counts.float())     # [S]
        self.register_buffer("u", u.float())               # [Vx] pseudo-counts by row
        self.register_buffer("v", v.float())               # [Vy] pseudo-counts by column
        self.register_buffer("d", torch.tensor(float(d)))  # pseudo-count on each row's target token
        # [Vx] the token of y that row x's d goes to: x's own token, or the row's most frequent one (-1: none)
        self.register_buffer("target", torch.arange(u.numel()) if target is None else target.long())
        self.register_buffer("a", a.float())               # [Vx] row normaliser
        self.register_buffer("b", b.float())               # [Vy] column normaliser
        self.alpha, self.towards = alpha, towards
        # which Dirichlet posterior the smoothed counts are the mean of: one per row of x ("x"), one per
        # column ("y"), one over the joint table ("joint"); "mode" for a table smoothed towards each row's
        # most frequent token, whose posterior is over that token (core/mode_posterior.py); None where the
        # prior's centre holds fitted structure (a channel's keep share and off-diagonal tokens) that the
        # posterior would take as known: on Zipf channels of 512-8,192 tokens it then missed by -2% to +20%
        self.rows = rows

    def posterior_shortfall(self) -> float | None:
        """The held-out bound's expected shortfall from the true MI under the Dirichlet posterior whose mean
        the table is (None where ``rows`` is None).

        A row's predictive is its posterior mean, and E_post KL(theta || mean) = H(mean) - E_post H(theta)
        is what that row's log-likelihood loses to the true row, in expectation given the counts; weighted by
        the rows' frequencies, less the same for the marginal, it is the bound's shortfall. Unlike the
        half-sample extrapolation it does not assume a 1/n law, which sparse tables (a few frames per cell)
        are far from: on 64x32 Dirichlet tables at 8,000 frames the halves recovered 0.07 of a 0.12-nat
        shortfall."""
        if self.rows is None:
            return None
        if self.rows == "mode":
            from .mode_posterior import mode_shortfall  # builds on this module's Dirichlet sums

            return mode_shortfall(self)
        vx, vy = self.u.numel(), self.v.numel()
        keys, counts = self.keys.cpu(), self.counts.double().cpu()
        nx = torch.zeros(vx, dtype=torch.float64).index_add_(0, keys // vy, counts)
        ny = torch.zeros(vy, dtype=torch.float64).index_add_(0, keys % vy, counts)
        n = float(nx.sum())
        if n <= 0:
            return None
        by_column = self.rows == "y"
        sums = _posterior_sums(self, by_column)  # [rows] A, S1, S2 of each row's (or column's) posterior
        if self.rows == "joint":
            total = sums.sum(0, keepdim=True)
            margins = (nx + vy * self.alpha, ny + vx * self.alpha)
            return float(_expected_kl(total)[0]) - sum(dirichlet_expected_kl(m) for m in margins)
        weights, other = (ny, nx) if by_column else (nx, ny)
        conditional = float((weights / n * _expected_kl(sums)).sum())
        # The marginal's error lifts the bound by its KL only in rows that follow their own counts: a row
        # mostly of prior is the marginal itself, and its ratio to the marginal is 1 whatever the error.
        share = float((weights / n * weights / sums[:, 0]).sum())
        return conditional - share * dirichlet_expected_kl(other + 0.5)

    def describe(self) -> str:
        """One line for summaries."""
        vx, vy = self.u.numel(), self.v.numel()
        if math.isinf(self.alpha):
            return f"table reference (closed form: a {vx}x{vy} channel that shows {self.towards})"
        how = (f"add-{self.alpha:g}" if self.towards == "uniform" else
               f"{self.alpha:g} pseudo-counts of the marginal of {self.towards} in each row")
        return f"table reference (closed form: {vx}x{vy} joint counts smoothed by {how})"

    def recipe(self) -> str:
        """The prior the counts are smoothed towards (its pseudo-counts are fitted)."""
        towards = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "w", self.towards)  # its share w is fitted too
        return f"table, {'channel' if math.isinf(self.alpha) else 'smoothed'} towards {towards}"

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """The tokens ``[N]``."""
        return x.reshape(-1)

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """The tokens ``[N]``."""
        return y.reshape(-1)

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        ex, ey = torch.broadcast_tensors(ex, ey)
        inner = self.u[ex] + self.v[ey] + self.d * (self.target[ex] == ey)
        if self.keys.numel():
            q = ex * self.v.numel() + ey
            at = torch.searchsorted(self.keys, q).clamp_max(self.keys.numel() - 1)
            inner = inner + torch.where(self.keys[at] == q, self.counts[at], torch.zeros((), device=q.device))
        return inner.log() + self.a[ex] + self.b[ey]


def _terms(alpha: torch.Tensor) -> torch.Tensor:
    """Per Dirichlet parameter: a, a log a and a digamma(a + 1), stacked on a last dimension of 3."""
    return torch.stack([alpha, torch.special.xlogy(alpha, alpha), alpha * torch.special.digamma(alpha + 1)], -1)


def _sums(alpha: torch.Tensor) -> torch.Tensor:
    """Per row of Dirichlet parameters ``[R, K]``: A = sum a, sum a log a and sum a digamma(a + 1), ``[R, 3]``."""
    return _terms(alpha).sum(1)


def _expected_kl(sums: torch.Tensor) -> torch.Tensor:
    """E KL(theta || E theta) under Dirichlet posteriors given by their ``_sums``: H(mean) - E H(theta), where
    H(mean) = log A - sum a log a / A and E H(theta) = digamma(A + 1) - sum a digamma(a + 1) / A."""
    a, s1, s2 = sums.unbind(1)
    return a.log() - s1 / a - torch.special.digamma(a + 1) + s2 / a


def dirichlet_expected_kl(alpha: torch.Tensor) -> float:
    """E KL(theta || its mean) for theta ~ Dirichlet(``alpha [V]``)."""
    return float(_expected_kl(_sums(alpha.unsqueeze(0)))[0])


def _posterior_sums(table: "TableReference", by_column: bool, block: int = 1 << 22, dense: bool = False) -> torch.Tensor:
    """``_sums`` of each row's posterior (each column's when ``by_column``): the counts plus the prior's
    pseudo-counts u_x + v_y + d [y = target_x].

    When every row's pseudo-counts are the same (d = 0 and the row side's share constant, as in every
    table that has a posterior), their sums are taken once and each seen cell adds its change: the cost
    is per seen cell, not per cell (8,192 x 8,192 tokens: 3.5 s densely). Otherwise (or ``dense``) the
    table is built densely a block of rows at a time."""
    vx, vy = table.u.numel(), table.v.numel()
    u, v, target = table.u.double().cpu(), table.v.double().cpu(), table.target.cpu()
    keys, counts, d = table.keys.cpu(), table.counts.double().cpu(), float(table.d)
    rx, ry = keys // vy, keys % vy
    lines, width = (vy, vx) if by_column else (vx, vy)
    own, other, line_of = (v, u, ry) if by_column else (u, v, rx)
    if not dense and d == 0 and bool((own == own[0]).all()):
        base = _sums((own[0] + other).unsqueeze(0))[0]
        prior = u[rx] + v[ry]
        return base.expand(lines, 3).clone().index_add_(0, line_of, _terms(counts + prior) - _terms(prior))
    step = max(1, block // max(width, 1))
    out = []
    for lo in range(0, lines, step):
        hi = min(lines, lo + step)
        if by_column:
            cols = torch.arange(lo, hi)
            full = u[:, None] + v[None, lo:hi] + d * (target[:, None] == cols[None, :])
            at = (ry >= lo) & (ry < hi)
            full.index_put_((rx[at], ry[at] - lo), counts[at], accumulate=True)
            full = full.T
        else:
            full = u[lo:hi, None] + v[None, :] + d * (target[lo:hi, None] == torch.arange(vy)[None, :])
            at = (rx >= lo) & (rx < hi)
            full.index_put_((rx[at] - lo, ry[at]), counts[at], accumulate=True)
        out.append(_sums(full))
    return torch.cat(out)


class TupleTableReference(TableReference):
    """A table reference whose rows or columns are the token tuples (codebooks, context windows) seen in
    training: a frame's tuple maps to its row, an unseen tuple to one more row without counts, whose
    smoothed distribution is the prior's."""

    def __init__(self, table: TableReference, codes_x: torch.Tensor, codes_y: torch.Tensor, vx: int, vy: int) -> None:
        # rows=None: unseen tuples share one row, whose test frames the posterior of the seen ones does not describe
        super().__init__(table.keys, table.counts, table.u, table.v, float(table.d), table.a, table.b, table.alpha,
                         table.towards, table.target, rows=None)
        self.register_buffer("codes_x", codes_x.long())  # [Sx] sorted codes of x's seen tuples
        self.register_buffer("codes_y", codes_y.long())
        self.vx, self.vy = vx, vy
        self.extrapolates = table.extrapolates

    def describe(self) -> str:
        """One line for summaries."""
        return super().describe().replace("table reference (closed form: ", "table reference (closed form, over "
                                          "the token tuples seen in training: ", 1)

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """Each frame's row: its tuple's index among the seen ones, or the last row."""
        return _tuple_rows(x, self.codes_x, self.vx)

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """Each frame's column, as encode_x."""
        return _tuple_rows(y, self.codes_y, self.vy)


def _tuple_codes(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """``[N, J]`` tokens -> ``[N]`` mixed-radix codes sum_j t_j vocab^j."""
    weights = torch.tensor([vocab**j for j in range(tokens.shape[1])], dtype=torch.long, device=tokens.device)
    return (tokens.long() * weights).sum(1)


def _tuple_rows(tokens: torch.Tensor, codes: torch.Tensor, vocab: int) -> torch.Tensor:
    """Rows of a tuple table for ``[N, ...]`` tokens: the seen tuple's index in ``codes``, else len(codes)."""
    q = _tuple_codes(tokens.reshape(tokens.shape[0], -1), vocab)
    at = torch.searchsorted(codes, q).clamp_max(codes.numel() - 1)
    return torch.where(codes[at] == q, at, torch.full_like(at, codes.numel()))


def tuple_code_fits(spec: StreamSpec, c: int) -> bool:
    """Whether a frame's token tuple has a mixed-radix code in 62 bits."""
    width = int(spec.n_codebooks or 1) * c
    return math.log2(max(2, int(spec.vocab_size or 0))) * width <= 62


def reference_kind(spec_x: StreamSpec, spec_y: StreamSpec, cx: int, cy: int) -> str | None:
    """Which reference fits this pairing: 'gaussian', 'lda', 'table', or None when none is cheap enough."""
    def single(spec: StreamSpec, c: int) -> bool:
        return spec.kind == "index" and spec.n_codebooks == 1 and c == 1

    def width(spec: StreamSpec, c: int) -> int:
        return int(spec.dim or 0) * c

    if spec_x.kind == "float" and spec_y.kind == "float":
        return "gaussian" if max(width(spec_x, cx), width(spec_y, cy)) <= MAX_FLOAT_WIDTH else None
    if single(spec_x, cx) and single(spec_y, cy):
        return "table"  # stored sparsely: any vocabulary fits
    if spec_x.kind == "index" and spec_y.kind == "index":
        # several tokens per frame (codebooks, a context window): a table over the token tuples seen in
        # training, each tuple's code a mixed-radix integer
        fits = all(tuple_code_fits(spec, c) for spec, c in ((spec_x, cx), (spec_y, cy)))
        return "table" if fits else None
    for tok, tc, flt, fc in ((spec_x, cx, spec_y, cy), (spec_y, cy, spec_x, cx)):
        if single(tok, tc) and flt.kind == "float":
            ok = int(tok.vocab_size or 0) <= MAX_LDA_VOCAB and width(flt, fc) <= MAX_FLOAT_WIDTH
            return "lda" if ok else None
        if tok.kind == "index" and flt.kind == "float":
            cells = int(tok.vocab_size or 0) * int(tok.n_codebooks or 1) * tc
            ok = cells <= MAX_ADDITIVE_CELLS and cells * width(flt, fc) <= MAX_ADDITIVE_TABLE
            return "additive" if ok and width(flt, fc) <= MAX_FLOAT_WIDTH else None
    return None


@torch.no_grad()
def fit_references(kind: str, train: FrameBank, cx: int, cy: int, spec_x: StreamSpec, spec_y: StreamSpec,
                   gen: torch.Generator, recipe: str | None = None) -> list[ReferenceCritic]:
    """Candidate reference critics of one kind fitted on (up to FIT_FRAMES of) the train frames; with ``recipe``,
    only those of the families that can give it (a half-sample refit of one recipe need not run the t EMs)."""
    frames = torch.randperm(train.n_frames, generator=gen)[:FIT_FRAMES]
    x, y = train.gather(frames, cx, cy)
    if kind == "table":
        vx, vy = int(spec_x.vocab_size or 0), int(spec_y.vocab_size or 0)
        if x[0].numel() == 1 and y[0].numel() == 1:
            return _fit_table(x.reshape(-1), y.reshape(-1), vx, vy)
        return _fit_tuple_table(x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1), vx, vy)
    fx = x.reshape(x.shape[0], -1).float()
    fy = y.reshape(y.shape[0], -1).float()
    if kind == "gaussian":
        from .copula import fit_copulas  # copula.py builds on this module's Gaussian fit

        if recipe is None:
            return fit_gaussian(fx, fy) + fit_copulas(fx, fy)
        if recipe.startswith("copula"):
            return fit_copulas(fx, fy, student=recipe.startswith("copula t quantiles"))
        return fit_gaussian(fx, fy)
    side, tokens, f = ("x", x, fy) if spec_x.kind == "index" else ("y", y, fx)
    vocab = int((spec_x if side == "x" else spec_y).vocab_size or 0)
    if kind == "additive":
        tokens = tokens.reshape(tokens.shape[0], -1)
        tuples = recipe is not None and recipe.startswith(TUPLE_RECIPE)
        additive = [] if tuples else _fit_additive(side, tokens, f, vocab)
        if recipe is not None and not tuples:
            return additive
        return additive + _fit_tuple_classes(side, tokens, f, vocab, recipe[len(TUPLE_RECIPE):] if tuples else None)
    from .copula import CLASS_COPULA_RECIPE, fit_class_copulas  # copula.py builds on this module

    tokens = tokens.reshape(-1)
    if recipe is not None and recipe.startswith(CLASS_COPULA_RECIPE):
        return fit_class_copulas(side, tokens, f, vocab, recipe[len(CLASS_COPULA_RECIPE):])
    return _fit_classes(side, tokens, f, vocab, recipe) + (fit_class_copulas(side, tokens, f, vocab, None)
                                                           if recipe is None else [])


def _fit_classes(side: str, tokens: torch.Tensor, f: torch.Tensor, vocab: int,
                 recipe: str | None, student: bool = True) -> list[ReferenceCritic]:
    """The class candidates for single tokens ``[N]`` against frames ``[N, D]``: LDA and the class spreads,
    the t classes (with ``student``), the diagonal classes (with ``recipe``, only its family)."""
    from .diag_classes import fit_diag_classes  # both build on this module's ReferenceCritic
    from .student_classes import fit_student_classes

    t_recipe = recipe is not None and recipe.startswith("t classes")
    diag_recipe = recipe is not None and recipe.startswith("diag classes")
    lda = [] if t_recipe or diag_recipe else _fit_lda(side, tokens, f, vocab)
    t_classes = fit_student_classes(side, tokens, f, vocab) if student and (recipe is None or t_recipe) else []
    diag = fit_diag_classes(side, tokens, f, vocab) if recipe is None or diag_recipe else []
    return lda + t_classes + diag


def _fit_tuple_classes(side: str, tokens: torch.Tensor, f: torch.Tensor, vocab: int,
                       recipe: str | None) -> list[ReferenceCritic]:
    """The class candidates over the token tuples seen in training (``tokens [N, J]``), each tuple a class and
    every unseen tuple one more class without frames; none when the tuples' codes overflow 62 bits or the
    tuples seen are too many for their frames (fewer than TUPLE_MIN_FRAMES each on average).

    Codebooks that interact (a mean per tuple, not a sum of one per codebook) defeat the additive model:
    2 codebooks of 16 tokens against 8 dims, a mean per tuple, read 0.15 nats with it and 1.10 with the
    trained critic, of a true 1.57; the classes over the 256 tuples come within 1% of it."""
    if math.log2(max(2, vocab)) * tokens.shape[1] > 62:
        return []
    codes, rows = torch.unique(_tuple_codes(tokens, vocab), return_inverse=True)
    if codes.numel() * TUPLE_MIN_FRAMES > tokens.shape[0] or codes.numel() + 1 > MAX_LDA_VOCAB:
        return []
    return [TupleClassReference(ref, codes, vocab)
            for ref in _fit_classes(side, rows, f, codes.numel() + 1, recipe)]


class MappedClassReference(ReferenceCritic):
    """A class reference fitted on one side's inputs mapped first (``_map``: token tuples to their classes,
    frames to their normal scores): the inner critic scores the mapped side and the other side as given."""

    mapped_side: str

    def __init__(self, inner: ReferenceCritic) -> None:
        super().__init__()
        self.inner = inner
        self.token_side = inner.token_side
        self.extrapolates = inner.extrapolates

    def _map(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """The inner classes' encoding of x (mapped when it is the mapped side)."""
        return self.inner.encode_x(self._map(x) if self.mapped_side == "x" else x)

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """The inner classes' encoding of y, as encode_x."""
        return self.inner.encode_y(self._map(y) if self.mapped_side == "y" else y)

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        return self.inner._t(ex, ey)


class TupleClassReference(MappedClassReference):
    """A class reference whose classes are the token tuples seen in training: a frame's tuple maps to its class,
    an unseen tuple to one more class without frames. Its posterior is not reported: the unseen tuples share one
    class, which the classes' posterior does not describe (as the tuple tables')."""

    def __init__(self, inner: ReferenceCritic, codes: torch.Tensor, vocab: int) -> None:
        super().__init__(inner)
        self.vocab = vocab
        self.register_buffer("codes", codes.long())  # [S] sorted codes of the seen tuples
        self.mapped_side = self.token_side

    def describe(self) -> str:
        """One line for summaries."""
        return self.inner.describe().replace("(closed form: ", "(closed form, over the token tuples seen in training: ", 1)

    def recipe(self) -> str:
        """The inner classes' recipe, marked as over tuples."""
        return TUPLE_RECIPE + self.inner.recipe()

    def _map(self, v: torch.Tensor) -> torch.Tensor:
        return _tuple_rows(v, self.codes, self.vocab)


def shrunk_correlations(rho: torch.Tensor, n: int, dx: int, dy: int) -> list[tuple[torch.Tensor, str]]:
    """Sample canonical correlations ``rho`` of n frames and their shrunk alternatives, each with a label.

    Sampling noise spreads canonical correlations apart and lifts the null ones above 0, and every
    wrong correlation costs test nats (about Dx Dy / 2n in all for the ML fit). Two corrections
    meet validation beside the ML values: (a) pooling towards their mean by the James-Stein share
    noise variance / observed variance, the noise variance of each being about
    (Dx + Dy)/(4n) (1 - mean^2)^2 (for many equal correlations); (b) removing the null part,
    rho^2 - e^2 with e = sqrt(Dx/n) + sqrt(Dy/n) the edge of pure-noise canonical correlations
    (for a few strong ones among many null ones).
    """
    out = [(rho, "")]
    if rho.numel() < 2:
        return out
    mean = rho.mean()
    noise = (dx + dy) / (4 * n) * float((1 - mean**2) ** 2)
    share = min(1.0, noise / max(float(rho.var()), 1e-12))
    if share >= 0.1:
        out.append((share * mean + (1 - share) * rho, f"correlations pooled {share:.2f} towards their mean"))
    edge2 = (math.sqrt(dx / n) + math.sqrt(dy / n)) ** 2
    cut = (rho**2 - edge2).clamp_min(0).sqrt()
    # (not when nothing is left: T = 0 is the untrained critic, which every selection already compares with)
    if bool((rho**2 < 4 * edge2).any()) and bool((cut > 0).any()):
        out.append((cut, "noise-level correlations removed"))
    return out


def fit_gaussian(fx: torch.Tensor, fy: torch.Tensor) -> list[ReferenceCritic]:
    """Gaussian (CCA) reference candidates, per ridge and correlation shrinkage, on float frames ``[N, Dx]`` and ``[N, Dy]``."""
    zx, mx, sx = standardise(fx)
    zy, my, sy = standardise(fy)
    n = zx.shape[0]
    # D x D products in float32 (several times faster), accumulated into float64 for the eigensolver.
    cxx, cyy, cxy = ((a.T @ b).double() / n for a, b in ((zx, zx), (zy, zy), (zx, zy)))
    out: list[ReferenceCritic] = []
    for ridge, wx, wy in zip(RIDGES, _inv_sqrts(cxx, RIDGES), _inv_sqrts(cyy, RIDGES)):
        u, rho, vt = torch.linalg.svd(wx @ cxy @ wy)
        r = int(rho.numel())
        # rho -> 1 would make the ratio infinitely sharp; such a critic loses the validation anyway.
        rho = rho.clamp(0.0, 0.9999)
        a = (wx @ u[:, :r]).T / sx           # acts on raw frames: u = a (f - m)
        b = (wy @ vt[:r].T).T / sy
        for rho_s, label in shrunk_correlations(rho, n, zx.shape[1], zy.shape[1]):
            out.append(GaussianReference(a, b, a @ mx, b @ my, rho_s, ridge, label))
    return out


def _fit_lda(side: str, tokens: torch.Tensor, f: torch.Tensor, vocab: int) -> list[ReferenceCritic]:
    z, mean, scale = standardise(f)
    n, d = z.shape
    counts = torch.bincount(tokens, minlength=vocab).double()
    sums = torch.zeros(vocab, d, dtype=torch.float64).index_add_(0, tokens, z.double())
    means = sums / counts.clamp_min(1)[:, None]      # unseen tokens sit at the grand mean (0)
    within = z - means.float()[tokens]
    seen = int((counts > 0).sum())
    cov = (within.T @ within).double() / max(1, n - seen)
    log_prior = torch.log((counts + 0.5) / (counts.sum() + 0.5 * vocab))
    out: list[ReferenceCritic] = []
    # Every whitening W = V diag(t) V^T shares the covariance's eigenvectors V (a ridge or a shrinkage only
    # moves its eigenvalues), so the class means, their scatter and the frames are rotated into that basis
    # once and each candidate rescales them: the D x D products are paid once, not per whitening.
    lam, vecs = torch.linalg.eigh(cov)
    tags = [(r, False) for r in LDA_RIDGES] + [(a, True) for a in LDA_SHRINKAGE]
    spectra = [(*tag, sp) for tag, sp in zip(tags, _spectra(lam, LDA_RIDGES, LDA_SHRINKAGE))]
    # V x D x D products in float32 (as the covariances), the results in float64 for the eigensolver
    means_v = (means.float() @ vecs.float()).double()    # class means in the eigenbasis [V, d]
    scatter_v = ((means_v * (counts / n)[:, None]).T.float() @ means_v.float()).double()
    frames_v = (z.float() @ vecs.float()).double()       # for the class-spread candidates
    for ridge, scaled, spectrum in spectra:
        t = spectrum.clamp_min(1e-12).rsqrt()
        w = vecs * t                                      # [D, d]: standardised frame -> whitened (eigenbasis)
        m = means_v * t                                   # whitened class means [V, d], within-class noise ~ I
        spreads = ridge == SPREAD_RIDGE and not scaled
        if spreads:
            # the spreads' posterior: each token's scatter about its own mean in all d directions, whatever a rule keeps
            ss_full = torch.zeros(vocab, dtype=torch.float64).index_add_(
                0, tokens, ((frames_v * t - m.float()[tokens].double()) ** 2).sum(1))
        # Empirical Bayes per discriminant direction: a sample mean of n_k frames carries noise of
        # variance 1/n_k, which adds seen/n to the frequency-weighted between-class scatter. Keep the
        # directions whose scatter exceeds that floor (tau^2 > 0) and shrink each class mean towards
        # the grand mean by tau^2 / (tau^2 + 1/n_k): rare tokens' noisy means would otherwise make
        # the critic overconfident.
        between = t[:, None] * scatter_v * t[None, :]    # = (m * counts / n)^T m
        b, u_all = torch.linalg.eigh(between)
        floor = seen / n
        # Sample means of pure noise spread the scatter's eigenvalues up to the Marchenko-Pastur edge
        # (sqrt(seen) + sqrt(d))^2 / n, not just to their mean: with many noise dimensions (a 513-dim
        # spectrum driven by a few directions) the directions under the edge are noise that frequent
        # tokens' means would carry into the critic. With few dimensions, all of them signal, the edge
        # would drop real directions. Both rules give candidates, and so does keeping every direction
        # with one shrinkage from their mean excess over the floor (class means spread alike in all
        # directions, which per-direction estimates scatter); validation chooses.
        edge = (math.sqrt(seen) + math.sqrt(d)) ** 2 / n
        differs = bool(((b > floor) & (b <= edge)).any()) and bool((b > edge).any())
        rules = [("floor", b > floor)] + ([("edge", b > edge)] if differs else [])
        pooled = float((b - floor).mean())
        if pooled > 0:
            rules.append(("pooled", torch.ones_like(b, dtype=torch.bool)))
        for rule, keep in rules:
            tau2 = b - floor if rule != "pooled" else torch.full_like(b, pooled)
            if not bool(keep.any()):
                keep = b == b.max()
                tau2 = b.clamp_min(1e-12)
            u, tau2 = u_all[:, keep], tau2[keep]
            shrink = tau2 / (tau2 + 1.0 / counts.clamp_min(1)[:, None])
            shrink = torch.where(counts[:, None] > 0, shrink, torch.zeros_like(shrink))
            # the critics hold float32 buffers: these products need no more
            proj = (w.float() @ u.float()).double().T / scale  # [r, D] on raw frames
            m_u = (m.float() @ u.float()).double()
            lda = LdaReference(side, m_u * shrink, log_prior, proj, proj @ mean, ridge, rule, scaled)
            # the whitened frames' noise in the kept directions: the identity only where the whitening is exact
            lda.posterior = ClassPosterior(counts, m_u, noise=(u * (lam * t**2)[:, None]).T @ u)
            out.append(lda)
            if spreads:
                # the spreads' posterior lives in every direction: the means in the dropped ones too
                rest = (m.float() @ u_all[:, ~keep].float()).double()
                out += _fit_spreads(side, tokens, frames_v * t, w, u, m_u, tau2, counts, log_prior, mean, scale, rule,
                                    rest, ss_full)
    return out


def _fit_spreads(side: str, tokens: torch.Tensor, zw: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
                 raw_means: torch.Tensor, tau2: torch.Tensor, counts: torch.Tensor, log_prior: torch.Tensor,
                 mean: torch.Tensor, scale: torch.Tensor, rule: str, rest: torch.Tensor,
                 ss_full: torch.Tensor) -> list[ReferenceCritic]:
    """Class-spread candidates beside one LDA fit (``zw``: its whitened frames, ``w``: its whitening, ``u``: its
    directions, all in one basis of the whitened space; ``rest``: the means in the directions it dropped,
    ``ss_full``: each token's scatter about its own mean in all of them): each token's own scatter about its
    shrunk mean.

    A class mean of n_k frames at spread s_k^2 is noisy by s_k^2 / n_k, so it is shrunk by
    tau^2 / (tau^2 + s_k^2 / n_k): a wide rare class is pulled further towards the grand mean.
    """
    n_k = counts.clamp_min(1)[:, None]
    # Scatter about each token's own sample mean in the r kept directions, which spends r of the
    # token's n_k d degrees of freedom: a token seen 3 times would otherwise look a third too narrow.
    resid = zw - (raw_means.float()[tokens] @ u.T.float()).double()
    ss = torch.zeros(counts.shape[0], dtype=torch.float64).index_add_(0, tokens, (resid**2).sum(1))
    d, r = zw.shape[1], u.shape[1]
    dof = (counts * d - r * (counts > 0)).clamp_min(0)
    pooled = float(ss.sum() / dof.sum().clamp_min(1))
    # the posterior's spreads: the scatter about each token's own mean in all d directions, (n_k - 1) d dof
    posterior = ClassPosterior(counts, raw_means, rest=rest, ss=ss_full, dof=(counts - 1).clamp_min(0) * d)
    out: list[ReferenceCritic] = []
    proj = (w.float() @ u.float()).double().T / scale
    full = w.T / scale
    for pseudo in SPREAD_PSEUDO_FRAMES:
        # a rare token's spread leans on the pooled one, as if it had `pseudo` more frames at that spread
        var = (ss + pseudo * d * pooled) / (dof + pseudo * d)
        own = raw_means * torch.where(counts[:, None] > 0, tau2 / (tau2 + var[:, None] / n_k), torch.zeros_like(raw_means))
        ref = SpreadReference(side, own, var, log_prior, proj, proj @ mean, full, full @ mean, pseudo, rule)
        ref.posterior = posterior
        out.append(ref)
    return out


def _fit_additive(side: str, tokens: torch.Tensor, f: torch.Tensor, vocab: int, sweeps: int = 4) -> list[ReferenceCritic]:
    """Per-position mean tables by backfitting (shrunk class means of the partial residual), then whitening."""
    z, mean, scale = standardise(f)
    z = z.double()
    n, j = tokens.shape
    counts = torch.stack([torch.bincount(tokens[:, i], minlength=vocab) for i in range(j)]).double()  # [J, V]
    uniq, inverse, tuple_counts = torch.unique(tokens, dim=0, return_inverse=True, return_counts=True)
    top = torch.argsort(tuple_counts, descending=True)[:MAX_MIXTURE]
    log_prior = torch.log(tuple_counts[top].double() / tuple_counts[top].sum())
    # each position's means spend a degree of freedom per seen token, as the LDA fit's within-class scatter
    dof = max(1, n - int((counts > 0).sum()))

    def resid_cov(frames: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        resid = frames - sum(tables[i][tokens[:, i]] for i in range(j))
        return (resid.T @ resid).double() / dof

    def critic(wt: torch.Tensor, w: torch.Tensor, ridge: float, shrink: float, rule: str = "pseudo") -> ReferenceCritic:
        means = sum(wt[i][uniq[top][:, i]] for i in range(j))  # [S, d] the mixture's components
        proj = w.T / scale                                    # [d, D] on raw frames
        return AdditiveReference(side, wt, means, log_prior, proj, proj @ mean, ridge, shrink, rule)

    out: list[ReferenceCritic] = []
    for pseudo in ADDITIVE_PSEUDO_FRAMES:
        (tables,) = _backfit(z, tokens, counts, sweeps, lambda sums, c: (sums / (c + pseudo)[:, None],))
        cov = resid_cov(z, tables)
        if pseudo == ADDITIVE_PSEUDO_FRAMES[0]:
            cov_first = cov
        for ridge, w in zip(ADDITIVE_RIDGES, _inv_sqrts(cov, ADDITIVE_RIDGES)):
            out.append(critic(tables @ w, w, ridge, pseudo))  # tables @ w: [J, V, d] whitened offsets
    # The per-direction candidates, whitened by the first fit's residual covariance, where a position's mean
    # noise is 1/n_k per direction. The frames, residuals and n x d x d products in float32, as the LDA fit's;
    # the per-token sums and scatters in float64. One eigendecomposition of a d x d scatter per position and
    # sweep: two codebooks of 1,024 tokens against 1,026 dims (a complex spectrum) from 20,000 frames took
    # 13.8 s to fit without these candidates and 24.5 s with them, on one thread.
    w0 = _inv_sqrts(cov_first, ADDITIVE_RIDGES[:1])[0]
    zw = z.float() @ w0.float()
    # backfitted with the noise-floor rule; the last sweep also gives each position's edge-rule means from
    # the same partial residual (one eigendecomposition per position and sweep serves both)
    fits = _backfit(zw, tokens, counts, sweeps, lambda sums, c: _eb_means(sums / c.clamp_min(1)[:, None], c))
    for rule, tables in zip(("floor", "edge"), fits):
        w1 = _inv_sqrts(resid_cov(zw, tables), ADDITIVE_RIDGES[:1])[0]
        out.append(critic((tables @ w1.float()).double(), w0 @ w1, ADDITIVE_RIDGES[0], 0.0, rule))
    return out


def _backfit(z: torch.Tensor, tokens: torch.Tensor, counts: torch.Tensor, sweeps: int,
             means_of: Callable[[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-position mean tables ``[J, V, d]`` (in ``z``'s dtype) by backfitting: each sweep refits position i from
    the per-token sums of its partial residual (float64) and its counts by ``means_of``, whose first table is
    the one fitted with; the last sweep's tables of every kind ``means_of`` gives are returned."""
    j, vocab, d = tokens.shape[1], counts.shape[1], z.shape[1]
    tables = torch.zeros(j, vocab, d, dtype=z.dtype)
    fitted = torch.zeros_like(z)
    last: list[list[torch.Tensor]] = []
    for sweep in range(sweeps):
        for i in range(j):
            fitted -= tables[i][tokens[:, i]]
            sums = torch.zeros(vocab, d, dtype=z.dtype).index_add_(0, tokens[:, i], z - fitted).double()
            kinds = means_of(sums, counts[i])
            tables[i] = kinds[0].to(z.dtype)
            fitted += tables[i][tokens[:, i]]
            if sweep == sweeps - 1:
                last.append([k.to(z.dtype) for k in kinds])
    return [torch.stack([last[i][k] for i in range(j)]) for k in range(len(last[0]))]


def _eb_means(raw: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means ``raw`` [V, d] of whitened frames (noise ~ I) shrunk per direction of their scatter, as the LDA
    fit does, each towards 0 by tau^2 / (tau^2 + 1/n_k): keeping the directions above the noise floor, and
    keeping those above the Marchenko-Pastur edge of noise."""
    n = float(counts.sum())
    seen = int((counts > 0).sum())
    b, u = torch.linalg.eigh((raw * (counts / n)[:, None]).T @ raw)
    floor = seen / n
    out = []
    for cut in (floor, (math.sqrt(seen) + math.sqrt(raw.shape[1])) ** 2 / n):
        keep = b > cut
        uk, tau2 = u[:, keep], (b - floor)[keep]
        shrink = tau2 / (tau2 + 1.0 / counts.clamp_min(1)[:, None])
        shrink = torch.where(counts[:, None] > 0, shrink, torch.zeros_like(shrink))
        out.append(((raw @ uk) * shrink) @ uk.T)
    return out[0], out[1]


def dirichlet_evidence_fit(cell: torch.Tensor, row_n: torch.Tensor, base: torch.Tensor,
                           grid: tuple[float, ...] = PSEUDO_COUNT_GRID) -> float:
    """The total pseudo-count b per row maximising the Dirichlet-multinomial evidence of the seen counts.

    Each row r's distribution is Dirichlet(b m) with a base measure m (``base`` at each seen cell); the
    evidence is sum_r [lgamma(b) - lgamma(n_r + b)] + sum_cells [lgamma(c + b m) - lgamma(b m)], and
    unseen cells add nothing to it, so a sparse table of any vocabulary costs per seen cell.
    """
    n = row_n[row_n > 0]

    def evidence(b: float) -> float:
        bm = b * base
        return float((math.lgamma(b) - torch.lgamma(n + b)).sum() + (torch.lgamma(cell + bm) - torch.lgamma(bm)).sum())

    return max(grid, key=evidence)


def _fit_table(x: torch.Tensor, y: torch.Tensor, vx: int, vy: int, matching: bool = True) -> list[ReferenceCritic]:
    keys, cell = torch.unique(x.long() * vy + y.long(), return_counts=True)
    cell = cell.double()
    rx, ry = keys // vy, keys % vy
    nx = torch.bincount(x, minlength=vx).double()
    ny = torch.bincount(y, minlength=vy).double()
    n = float(nx.sum())
    zx, zy = torch.zeros(vx, dtype=torch.float64), torch.zeros(vy, dtype=torch.float64)
    # add-alpha: one symmetric Dirichlet over all vx vy cells (a single "row" of n frames); every cell
    # gets alpha, and rows, columns and the total grow by alpha per cell
    cells = vx * vy
    alpha = dirichlet_evidence_fit(cell, torch.tensor([n], dtype=torch.float64), torch.full_like(cell, 1.0 / cells)) / cells
    out: list[ReferenceCritic] = [
        TableReference(keys, cell, zx + alpha, zy, 0.0, -(nx + vy * alpha).log() + math.log(n + cells * alpha),
                       -(ny + vx * alpha).log(), alpha, rows="joint")]
    # Smoothing towards the other side's marginal (a Dirichlet prior centred on it): a rare token's
    # row falls back to how often each token occurs at all, not to a uniform guess; with Zipf-like
    # marginals that is what the data support.
    px, py = (nx + 0.5) / (n + 0.5 * vx), (ny + 0.5) / (n + 0.5 * vy)
    beta_y = dirichlet_evidence_fit(cell, nx, py[ry])
    out.append(TableReference(keys, cell, zx, beta_y * py, 0.0, -(nx + beta_y).log(), -py.log(), beta_y, "y"))
    beta = dirichlet_evidence_fit(cell, ny, px[rx])
    out.append(TableReference(keys, cell, beta * px, zy, 0.0, -px.log(), -(ny + beta).log(), beta, "x", rows="y"))
    if matching:
        out += _fit_matching_table(keys, cell, nx, px, py)
    out += _fit_mode_table(keys, cell, nx, py, _loo_log_likelihood(cell, nx[rx], py[ry], beta_y))
    return out


def _loo_log_likelihood(cell: torch.Tensor, row_n: torch.Tensor, base: torch.Tensor, b: float) -> float:
    """Sum over training frames of log p(y | its row's other frames) under a Dirichlet(b base) prior per row,
    from the seen cells' counts, their rows' totals and each cell's prior share with that frame left out."""
    return float((cell * ((cell - 1 + b * base) / (row_n - 1 + b)).log()).sum())


def _fit_mode_table(keys: torch.Tensor, cell: torch.Tensor, nx: torch.Tensor, py: torch.Tensor,
                    loo_marginal: float) -> list[ReferenceCritic]:
    """A table smoothed towards "the row's most frequent token, else another": y = f(x) through a noisy channel.

    Tokenizers of the same speech (a codec's codebooks against phones or another tokenizer's units) often
    map each row to one token of the other side plus noise. A row's Dirichlet prior is centred on w at its
    most frequent token plus (1 - w) times the tokens shown off the modes; w is the excess over chance of
    frames whose token is their row's mode left out of the count (a row seen once predicts nothing), so
    that rows with few frames do not vouch for themselves. Without such structure w is ~0 and no
    candidate is added; nor is it when its leave-one-out likelihood of the training frames (each row's
    mode found without the frame) falls short of ``loo_marginal``, the prior centred on y's marginal:
    rows that are merely peaked (a Dirichlet-drawn table, w ~0.13) would otherwise add a candidate that
    can win validation by chance.
    """
    vx, vy = nx.numel(), py.numel()
    rx, ry = keys // vy, keys % vy
    c1 = torch.zeros(vx, dtype=torch.float64).scatter_reduce_(0, rx, cell, "amax", include_self=False)
    # the first cell of each row at its maximum count is the mode
    at_max = torch.nonzero(cell == c1[rx]).reshape(-1)
    first = torch.full((vx,), keys.numel(), dtype=torch.long).scatter_reduce_(0, rx[at_max], at_max, "amin")
    seen = nx > 0
    mode = torch.where(seen, ry[first.clamp_max(keys.numel() - 1)], torch.full_like(first, -1))
    is_mode = ry == mode[rx]
    c2 = torch.zeros(vx, dtype=torch.float64).scatter_reduce_(0, rx[~is_mode], cell[~is_mode], "amax", include_self=False)
    # leave-one-out: a frame on its row's mode still finds it the mode without itself if c1 - 1 > c2 (ties: half)
    loo = torch.where(c1 - 1 > c2, 1.0, torch.where(c1 - 1 == c2, 0.5, 0.0)) * (c1 >= 2)
    rows = nx >= 2
    n_eff = float(nx[rows].sum())
    if n_eff <= 0:
        return []
    matches = float((c1 * loo)[rows].sum())
    chance = float((nx * py[mode.clamp_min(0)])[rows].sum()) / n_eff
    # half a mismatch added: a channel seen without noise keeps w < 1, so that an unseen cell scores finitely
    w = ((matches + 0.5) / (n_eff + 1.0) - chance) / (1.0 - chance)
    if w <= 0.01:
        return []
    off = torch.zeros(vy, dtype=torch.float64).index_add_(0, ry[~is_mode], cell[~is_mode]) + 0.5
    off = off / off.sum()
    beta = dirichlet_evidence_fit(cell, nx, (1.0 - w) * off[ry] + w * is_mode.double())
    # with the frame left out, a mode cell stays its row's mode only if c1 - 1 > c2 (ties: half)
    loo_base = (1.0 - w) * off[ry] + w * is_mode.double() * loo[rx]
    if _loo_log_likelihood(cell, nx[rx], loo_base, beta) <= loo_marginal:
        return []
    # an unseen row holds only the off-mode share of its prior
    a = torch.where(seen, -(nx + beta).log(), torch.full_like(nx, -math.log(beta * (1.0 - w))))
    ref = TableReference(keys, cell, torch.zeros(vx, dtype=torch.float64), beta * (1.0 - w) * off, beta * w, a,
                         -py.log(), beta, f"y, with {w:.2f} of it on the row's most frequent token", mode, rows="mode")
    # Which token is a row's mode is settled by its counts crossing each other, not by a smooth fit: with
    # few frames per row its error falls much faster than 1/n (codebook pairs of 32 tokens to 256 at ~7
    # frames per pair: the halves read 0.43 nats below the full fit, whose shortfall was 0.21), and the
    # halves' correction would overshoot. The posterior of each row's mode corrects it instead.
    ref.extrapolates = False
    return [ref]


def _fit_tuple_table(x: torch.Tensor, y: torch.Tensor, vx: int, vy: int) -> list[ReferenceCritic]:
    """Table candidates over the token tuples of each side (``[N, J]``; J = 1 for a single token), every unseen
    tuple sharing one extra row or column. The matching-token candidates do not apply: a tuple's row is no
    token of the other side."""
    sides = []
    for t, v in ((x, vx), (y, vy)):
        codes, rows = torch.unique(_tuple_codes(t, v), return_inverse=True)
        sides.append((codes, rows, codes.numel() + 1))
    (cx, rx, nx), (cy, ry, ny) = sides
    return [TupleTableReference(ref, cx, cy, vx, vy) for ref in _fit_table(rx, ry, nx, ny, matching=False)]


def _fit_matching_table(keys: torch.Tensor, cell: torch.Tensor, nx: torch.Tensor, px: torch.Tensor,
                        py: torch.Tensor) -> list[ReferenceCritic]:
    """Tables smoothed towards "the same token, else another", for two streams over one vocabulary.

    Token streams of one tokenizer under two conditions (clean and noisy speech, two codec rates) keep
    a token with some probability w and otherwise show another. A row seen a few times cannot tell
    that from its counts, but the whole table can: w is the excess of matches over chance, and each
    row's Dirichlet prior is centred on w at its own token plus (1 - w) times the tokens shown off the
    diagonal. Without such structure w is ~0 and no candidate is added.
    """
    vx, vy = px.numel(), py.numel()
    common = min(vx, vy)  # vocabularies inferred from data may differ by the unseen top ids
    n = float(nx.sum())
    rx, ry = keys // vy, keys % vy
    diag = rx == ry
    matches = float(cell[diag].sum())
    chance = float((px[:common] * py[:common]).sum())
    w = ((matches + 0.5) / (n + 1.0) - chance) / (1.0 - chance)  # < 1, as in _fit_mode_table
    if w <= 0.01:
        return []
    # What shows when the token is not kept: the columns' counts off the diagonal.
    off = torch.zeros(vy, dtype=torch.float64).index_add_(0, ry[~diag], cell[~diag]) + 0.5
    off = off / off.sum()
    zx = torch.zeros(vx, dtype=torch.float64)
    fitted = dirichlet_evidence_fit(cell, nx, (1.0 - w) * off[ry] + w * diag.double())
    out: list[ReferenceCritic] = []
    for beta in (fitted, math.inf):
        if math.isinf(beta):
            # the prior alone, a two-parameter channel (keep or replace) that rare rows need
            out.append(TableReference(keys[:0], cell[:0], zx, (1.0 - w) * off, w, zx, -py.log(), beta,
                                      f"x's own token with probability {w:.2f}, else a token drawn as off the diagonal",
                                      rows=None))
        else:
            out.append(TableReference(keys, cell, zx, beta * (1.0 - w) * off, beta * w, -(nx + beta).log(), -py.log(),
                                      beta, f"y, with {w:.2f} of it on x's own token", rows=None))
    return out
