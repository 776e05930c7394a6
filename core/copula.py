"""Copula references: Gaussian and Student-t dependence fitted on two float streams' ranks, and class
references on a float stream's ranks.

I(X;Y) depends on the copula alone, so a critic fitted to each dimension's normal scores (its
empirical CDF on the train frames, then Phi^-1) is blind to invertible per-dimension warps:

- ``gaussian copula``: the Gaussian reference on normal scores. Exact for any Gaussian pair pushed
  through monotone maps (cube, tanh, exp), where the plain Gaussian reference is misspecified.
- ``student-t copula``: the same scores mapped to Student-t quantiles with nu degrees of freedom and
  a correlation R fitted by EM, T = log t(qx, qy; R, nu) - log t(qx; Rxx, nu) - log t(qy; Ryy, nu).
  Heavy tails that share one scale (speech energy moves every band at once) make large values on one
  side predict large values on the other, a dependence that no Gaussian copula carries. nu is chosen
  by the copula likelihood on the train frames, so only one such candidate meets validation.

- ``class copulas`` (single tokens against floats): LDA, the class spreads and the diagonal classes on the
  float side's normal scores, where some dimension's marginal is far from Gaussian (``fit_class_copulas``).

All are fixed functions once fitted, validated beside the other references like any of them.
"""
from __future__ import annotations

import math

import torch
from scipy import special
from torch import nn

from .data import EmpiricalCdf
from .reference import GaussianReference, MappedClassReference, ReferenceCritic, fit_gaussian

# Per-side width up to which the copula is fitted: each dimension gets its own CDF histogram.
MAX_COPULA_WIDTH = 512
CDF_FIT_ROWS = 50_000
# The t fit runs EM over every nu in NUS, each step O(n D^2): small joint widths only.
MAX_T_WIDTH = 64
T_FIT_ROWS = 20_000
NUS = (2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 50.0)
EM_STEPS = 30
#: class references on normal scores where a dimension's standard and normal scores correlate below this, and
#: their recipe prefix
CLASS_COPULA_GATE = 0.98
CLASS_COPULA_RECIPE = "copula: "
Z_LIMIT = 6.0  # normal scores are bounded by Phi^-1(1 - 1/2n): 4.9 at a million frames
Z_STEP = 1.0 / 512


class TQuantiles(nn.Module):
    """Student-t quantiles of normal scores, q = F_nu^-1(Phi(z)), by linear interpolation in a table."""

    def __init__(self, nu: float) -> None:
        super().__init__()
        z = torch.arange(-Z_LIMIT, Z_LIMIT + Z_STEP / 2, Z_STEP, dtype=torch.float64)
        # Each tail from its own small probability: 1 - Phi(z) would round to 0 for large z.
        neg = torch.as_tensor(special.stdtrit(nu, special.ndtr(-z.abs().numpy())))
        self.register_buffer("table", torch.where(z < 0, neg, -neg).float())
        self.nu = nu

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """q ``[N, D]`` for normal scores ``[N, D]``."""
        pos = (z.clamp(-Z_LIMIT, Z_LIMIT) + Z_LIMIT) / Z_STEP
        i = pos.floor().long().clamp_(0, self.table.numel() - 2)
        left = self.table[i]
        return left + (pos - i) * (self.table[i + 1] - left)


class StudentReference(ReferenceCritic):
    """The Student-t density ratio of (qx, qy) with correlation R and nu degrees of freedom.

    With P = R^-1, the joint quadratic form splits as qx'Pxx qx + qy'Pyy qy + 2 qx'Pxy qy, so x encodes
    to ``[Pyx qx, qx'Pxx qx, its marginal term]`` and y to ``[qy, qy'Pyy qy, its marginal term]``: a
    marginal pair costs one dot product and a log.
    """

    def __init__(self, r: torch.Tensor, dx: int, nu: float) -> None:
        super().__init__()
        r = r.double()
        d = r.shape[0]
        dy = d - dx
        p = torch.linalg.inv(r)
        logdet = torch.linalg.slogdet
        self.register_buffer("pxx", p[:dx, :dx].float())
        self.register_buffer("pyy", p[dx:, dx:].float())
        self.register_buffer("pxy", p[:dx, dx:].float())
        self.register_buffer("rxx_inv", torch.linalg.inv(r[:dx, :dx]).float())
        self.register_buffer("ryy_inv", torch.linalg.inv(r[dx:, dx:]).float())
        c = (math.lgamma((nu + d) / 2) + math.lgamma(nu / 2) - math.lgamma((nu + dx) / 2) - math.lgamma((nu + dy) / 2)
             - 0.5 * float(logdet(r)[1]) + 0.5 * float(logdet(r[:dx, :dx])[1]) + 0.5 * float(logdet(r[dx:, dx:])[1]))
        self.register_buffer("c", torch.tensor(c, dtype=torch.float32))
        self.nu, self.dx, self.dy = nu, dx, dy

    def describe(self) -> str:
        """One line for summaries."""
        return f"student-t dependence, {self.nu:g} degrees of freedom, {self.dx}+{self.dy} dims"

    def recipe(self) -> str:
        """Student-t dependence (its degrees of freedom are fitted)."""
        return "student-t dependence"

    def _side(self, q: torch.Tensor, lin: torch.Tensor | None, quad: torch.Tensor, marg: torch.Tensor,
              d: int) -> torch.Tensor:
        own = ((q @ quad) * q).sum(1, keepdim=True)
        m = 0.5 * (self.nu + d) * torch.log1p(((q @ marg) * q).sum(1, keepdim=True).clamp_min(0) / self.nu)
        return torch.cat([q if lin is None else q @ lin, own, m], 1)

    def encode_x(self, q: torch.Tensor) -> torch.Tensor:
        """``[N, dy + 2]``."""
        return self._side(q, self.pxy, self.pxx, self.rxx_inv, self.dx)

    def encode_y(self, q: torch.Tensor) -> torch.Tensor:
        """``[N, dy + 2]``."""
        return self._side(q, None, self.pyy, self.ryy_inv, self.dy)

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        joint = (ex[..., -2] + ey[..., -2] + 2 * (ex[..., :-2] * ey[..., :-2]).sum(-1)).clamp_min(0)
        d = self.dx + self.dy
        return self.c - 0.5 * (self.nu + d) * torch.log1p(joint / self.nu) + ex[..., -1] + ey[..., -1]


class CopulaReference(ReferenceCritic):
    """A reference critic applied to each stream's normal scores (or their t quantiles)."""

    def __init__(self, inner: ReferenceCritic, cdf_x: EmpiricalCdf, cdf_y: EmpiricalCdf,
                 quantiles: TQuantiles | None = None) -> None:
        super().__init__()
        self.inner, self.cdf_x, self.cdf_y, self.quantiles = inner, cdf_x, cdf_y, quantiles

    def describe(self) -> str:
        """One line for summaries."""
        if isinstance(self.inner, GaussianReference):
            return f"gaussian copula reference (closed form on normal scores: {self.inner.fit_terms()})"
        return f"student-t copula reference (closed form on normal scores: {self.inner.describe()})"

    def recipe(self) -> str:
        """The inner critic's recipe on normal scores (or their t quantiles)."""
        return f"copula{'' if self.quantiles is None else ' t quantiles'}: {self.inner.recipe()}"

    def _scores(self, cdf: EmpiricalCdf, f: torch.Tensor) -> torch.Tensor:
        z = cdf(f.reshape(f.shape[0], -1))
        return z if self.quantiles is None else self.quantiles(z)

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """The inner critic's encoding of x's scores."""
        return self.inner.encode_x(self._scores(self.cdf_x, x))

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """The inner critic's encoding of y's scores."""
        return self.inner.encode_y(self._scores(self.cdf_y, y))

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        return self.inner._t(ex, ey)


def fit_copulas(fx: torch.Tensor, fy: torch.Tensor, student: bool = True) -> list[ReferenceCritic]:
    """Gaussian-copula candidates (as ``fit_gaussian``'s) and (with ``student``) the likeliest Student-t copula, on
    train frames ``[N, D]``."""
    if max(fx.shape[1], fy.shape[1]) > MAX_COPULA_WIDTH:
        return []
    cdf_x, cdf_y = EmpiricalCdf.fit(fx[:CDF_FIT_ROWS]), EmpiricalCdf.fit(fy[:CDF_FIT_ROWS])
    zx, zy = cdf_x(fx), cdf_y(fy)
    out: list[ReferenceCritic] = [CopulaReference(g, cdf_x, cdf_y) for g in fit_gaussian(zx, zy)]
    if student and zx.shape[1] + zy.shape[1] <= MAX_T_WIDTH:
        t_fit = fit_student(zx[:T_FIT_ROWS], zy[:T_FIT_ROWS])
        if t_fit is not None:
            out.append(CopulaReference(t_fit[0], cdf_x, cdf_y, t_fit[1]))
    return out


def fit_student(zx: torch.Tensor, zy: torch.Tensor) -> tuple[StudentReference, TQuantiles] | None:
    """The Student-t copula of normal scores whose nu (from NUS) has the highest train likelihood.

    None when the likeliest nu is the largest tried: the data are then as Gaussian as the grid can tell,
    and the Gaussian copula already covers them.
    """
    best: tuple[float, torch.Tensor, TQuantiles] | None = None
    for nu in NUS:
        quant = TQuantiles(nu)
        r, ll = _em_correlation(torch.cat([quant(zx), quant(zy)], 1).double(), nu)
        if best is None or ll > best[0]:
            best = (ll, r, quant)
    if best is None or best[2].nu == NUS[-1]:
        return None
    _, r, quant = best
    return StudentReference(r, zx.shape[1], quant.nu), quant


def _em_correlation(q: torch.Tensor, nu: float, ridge: float = 1e-4) -> tuple[torch.Tensor, float]:
    """EM for the scatter of a centred multivariate t with known nu, as a correlation; and the copula's mean log-likelihood."""
    n, d = q.shape
    eye = torch.eye(d, dtype=q.dtype)
    s = q.T @ q / n + ridge * eye
    for _ in range(EM_STEPS):
        m = ((q @ torch.linalg.inv(s)) * q).sum(1)
        w = (nu + d) / (nu + m)
        s = (q * w[:, None]).T @ q / n + ridge * eye
    sd = s.diagonal().sqrt()
    r = s / sd[:, None] / sd[None, :]
    m = ((q @ torch.linalg.inv(r)) * q).sum(1)
    # log t_d(q; R, nu) minus the d marginal log t_1(q_j; nu): the copula density (the marginals are exact)
    joint = (math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi)
             - 0.5 * float(torch.linalg.slogdet(r)[1]) - 0.5 * (nu + d) * torch.log1p(m / nu))
    one = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    marg = (one - 0.5 * (nu + 1) * torch.log1p(q**2 / nu)).sum(1)
    return r, float((joint - marg).mean())


class ClassCopulaReference(MappedClassReference):
    """A class reference (single tokens against floats) on the float side's normal scores."""

    def __init__(self, inner: ReferenceCritic, cdf: EmpiricalCdf) -> None:
        super().__init__(inner)
        self.cdf = cdf
        self.mapped_side = "y" if self.token_side == "x" else "x"

    def describe(self) -> str:
        """One line for summaries."""
        return self.inner.describe().replace(" reference (closed form: ", " copula reference (closed form on "
                                             "normal scores: ", 1)

    def recipe(self) -> str:
        """The inner classes' recipe on normal scores."""
        return CLASS_COPULA_RECIPE + self.inner.recipe()

    def posterior_shortfall(self) -> float | None:
        """The inner classes' expected shortfall under their posterior (in normal-score space), if they have one."""
        inner = getattr(self.inner, "posterior_shortfall", None)
        return inner() if inner is not None else None

    def _map(self, v: torch.Tensor) -> torch.Tensor:
        return self.cdf(v.reshape(v.shape[0], -1))


def fit_class_copulas(side: str, tokens: torch.Tensor, f: torch.Tensor, vocab: int,
                      recipe: str | None) -> list[ReferenceCritic]:
    """The Gaussian class candidates (LDA, class spreads, diagonal classes) on each dimension's normal scores,
    where some dimension's marginal is far from Gaussian (its standard scores correlate with its normal scores
    below CLASS_COPULA_GATE): none otherwise, or beyond MAX_COPULA_WIDTH dims.

    MI does not change under a monotone map of each dimension, but Gaussian classes do not survive one:
    64 Zipf tokens against 8 dims pushed through tanh(2 y) (values piled up near +-1, light-tailed, so the
    default normalisation keeps their standard scores) read -14.8% with the classifier critic, the Gaussian
    classes validating lower still; on normal scores the classes come back. Where the marginals are
    near-Gaussian (mixtures of Gaussian classes: 0.99 and more) nothing is fitted, so those estimates and
    their cost stay as they are.
    """
    from .reference import _fit_classes  # reference.py imports this module lazily

    if f.shape[1] > MAX_COPULA_WIDTH:
        return []
    cdf = EmpiricalCdf.fit(f[:CDF_FIT_ROWS])
    z = cdf(f)
    spread = f.std(0)
    std = (f - f.mean(0)) / spread.clamp_min(1e-12)
    corr = (std * (z - z.mean(0))).mean(0) / z.std(0).clamp_min(1e-12)
    # a constant dimension has no marginal to warp: it does not open the gate
    corr = torch.where(spread > 1e-12, corr, torch.ones_like(corr))
    if float(corr.min()) >= CLASS_COPULA_GATE:
        return []
    if recipe is not None and recipe.startswith("t classes"):
        return []
    return [ClassCopulaReference(ref, cdf) for ref in _fit_classes(side, tokens, z, vocab, recipe, student=False)]
