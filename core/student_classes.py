"""The heavy-tailed class reference: token k's frames scatter about their class mean with Student-t noise.

Beside LDA's Gaussian classes (reference.py), for single tokens against a float stream:

    T(k, y) = log p(y | k) - log sum_j pi_j p(y | j),  p(y | k) = prod_d t_nu((y_d - mu_kd) / s_d) / s_d

with a scale s_d per dimension shared by every class. Gaussian classes square every deviation, so a
frame that is far from its class mean in one dimension (a click, a burst of energy in one band) scores
as if it came from another class, and the bound pays log 1/p(k | y) for it: on classes with t3 noise
in 8 dims LDA's held-out bound stays 15-20% below the truth while this model comes within 2% of the
true critic. The means and scales are fitted by EM (each deviation weighted by (nu + 1) / (nu + r^2 / s^2),
Liu & Rubin 1995) and nu by the fitted model's likelihood of the train frames over NUS, so one candidate
meets validation; where the noise is Gaussian it loses validation to LDA, which also models correlations.

minecli's default normalisation maps heavy-tailed dimensions to normal scores (data.py), which squeezes
polynomial tails into Gaussian ones: the class noise is then no longer t-shaped, and on t2 noise the fit
lost 0.12-0.15 nats of its held-out bound. A second candidate maps each dimension's values through the
Student-t quantiles of 4 degrees of freedom first (Phi, then F_4^-1: monotone, so MI is unchanged), which
gives polynomial tails back and recovered all but 0.01 of that; on Gaussian classes it validates far
lower and is not chosen.
"""
from __future__ import annotations

import math

import torch

from .copula import TQuantiles
from .reference import ReferenceCritic

# Each frame's normaliser sums over every class in every dimension: N V D work, so V D is bounded; and
# the EM's 210 passes over the frames (7 nus x 15 steps x 2 candidates) are only cheap on narrow frames
# (41 classes x 1,024 dims at 20,000 rows took 6 minutes), as the copula's t fit.
MAX_STUDENT_CELLS = 65_536
MAX_STUDENT_WIDTH = 64
NUS = (1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0)
EM_STEPS = 15  # per nu, warm-started: the log likelihood is then within 1e-5 (relative) of 60 steps
# frames x classes x dims per chunk of the normaliser: 128k floats stay in cache (7x faster than 4M at
# 1,024 classes x 16 dims)
CHUNK_CELLS = 1 << 17
TAIL_NU = 4.0  # the second candidate's quantile map
# EM holds a few float64 copies of the frames: beyond 1M values it fits on a random subset of the rows
# (at least 20,000), which bounds its memory and time on a large train split
EM_VALUES, EM_MIN_ROWS = 1 << 20, 20_000


class StudentClassReference(ReferenceCritic):
    """Classes with independent Student-t noise per dimension: a token encodes to its class mean ``[d]``, a
    frame to its scaled values and its normaliser ``[d + 1]``; a pair sums log1p over the dimensions."""

    def __init__(self, token_side: str, means: torch.Tensor, log_prior: torch.Tensor, center: torch.Tensor,
                 scale: torch.Tensor, nu: float, tails: TQuantiles | None = None) -> None:
        super().__init__()
        self.token_side, self.nu = token_side, float(nu)
        self.tails = tails  # frames -> t quantiles of their normal scores, before centring and scaling
        self.register_buffer("means", means.float())          # [V, d] in units of each dimension's t scale
        self.register_buffer("log_prior", log_prior.float())  # [V]
        self.register_buffer("center", center.float())        # [d]: z = (f - center) / scale
        self.register_buffer("scale", scale.float())
        self.vocab = int(means.shape[0])

    def describe(self) -> str:
        """One line for summaries."""
        tails = "" if self.tails is None else f", on t quantiles ({self.tails.nu:g} dof) of the frames' normal scores"
        return (f"student-t class reference (closed form: {self.vocab} classes of {self.token_side}'s tokens, "
                f"independent t noise of {self.nu:g} degrees of freedom per dimension{tails})")

    def recipe(self) -> str:
        """On frames as given or on t quantiles of their normal scores (nu is fitted)."""
        return f"t classes, {'frames' if self.tails is None else 't quantiles'}"

    def _log_kernel(self, r: torch.Tensor) -> torch.Tensor:
        """sum over the last dimension of log t_nu(r), without the constant every class shares (``r`` is
        overwritten: callers pass a fresh difference)."""
        return r.square_().mul_(1.0 / self.nu).log1p_().sum(-1).mul_(-0.5 * (self.nu + 1.0))

    def _floats(self, f: torch.Tensor) -> torch.Tensor:
        flat = f.reshape(f.shape[0], -1)
        z = ((flat if self.tails is None else self.tails(flat)) - self.center) / self.scale
        step = max(1, CHUNK_CELLS // max(1, self.means.numel()))
        norm = torch.cat([torch.logsumexp(self._log_kernel(z[i:i + step, None, :] - self.means) + self.log_prior, 1)
                          for i in range(0, z.shape[0], step)]) if z.shape[0] else z.new_zeros(0)
        return torch.cat([z, -norm[:, None]], 1)

    def _tokens(self, idx: torch.Tensor) -> torch.Tensor:
        return self.means[idx.reshape(-1)]

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, d]`` class means, or ``[N, d + 1]`` scaled frames and their normalisers."""
        return self._tokens(x) if self.token_side == "x" else self._floats(x)

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """As encode_x."""
        return self._tokens(y) if self.token_side == "y" else self._floats(y)

    def _t(self, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        tok, frame = (ex, ey) if self.token_side == "x" else (ey, ex)
        return self._log_kernel(frame[..., :-1] - tok) + frame[..., -1]


def _em(tokens: torch.Tensor, z: torch.Tensor, counts: torch.Tensor, nu: float,
        w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Class means ``[V, d]`` and per-dimension scales^2 ``[d]`` of t-noise classes by EM from the frames'
    weights ``w``, the train frames' log likelihood under them, and the last weights (to start the next nu)."""
    vocab, (n, d) = counts.numel(), z.shape
    dof = max(1.0, n - float((counts > 0).sum()))
    for _ in range(EM_STEPS):
        sw = torch.zeros(vocab, d, dtype=z.dtype).index_add_(0, tokens, w)
        means = torch.zeros(vocab, d, dtype=z.dtype).index_add_(0, tokens, w * z) / sw.clamp_min(1e-12)
        r2 = (z - means[tokens]) ** 2
        s2 = ((w * r2).sum(0) / dof).clamp_min(1e-12)
        w = (nu + 1.0) / (nu + r2 / s2)
    log_t = (math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
             - 0.5 * (nu + 1) * torch.log1p(r2 / s2 / nu) - 0.5 * s2.log())
    return means, s2, float(log_t.sum()), w


def fit_student_classes(side: str, tokens: torch.Tensor, f: torch.Tensor, vocab: int) -> list[ReferenceCritic]:
    """The t-class candidates for single tokens ``[N]`` against float frames ``[N, D]`` (none when V D exceeds
    MAX_STUDENT_CELLS or D MAX_STUDENT_WIDTH), on the frames as given and on their t quantiles: nu at the fitted model's highest
    train likelihood over NUS."""
    if vocab * f.shape[1] > MAX_STUDENT_CELLS or f.shape[1] > MAX_STUDENT_WIDTH or f.shape[0] < 2:
        return []
    # fit_references hands over the train frames in a random order: the first rows are a random subset
    rows = max(EM_MIN_ROWS, EM_VALUES // f.shape[1])
    tokens, f = tokens[:rows], f[:rows]
    tails = TQuantiles(TAIL_NU)
    return [_fit(side, tokens, f, vocab, None), _fit(side, tokens, tails(f.float()), vocab, tails)]


def _fit(side: str, tokens: torch.Tensor, f: torch.Tensor, vocab: int, tails: TQuantiles | None) -> StudentClassReference:
    """One t-class fit on frames ``f`` (already through ``tails``, which the critic keeps for the frames it scores)."""
    f64 = f.double()
    # median and quartiles: a mean and a variance are at the mercy of the tails being modelled
    center = f64.median(0).values
    q = torch.quantile(f64[:100_000], torch.tensor([0.25, 0.75], dtype=torch.float64), dim=0)
    scale = ((q[1] - q[0]) / 1.349).clamp_min(1e-8)
    z = (f64 - center) / scale
    counts = torch.bincount(tokens, minlength=vocab).double()
    fits, w = [], torch.ones_like(z)
    for v in sorted(NUS, reverse=True):  # each nu starts from the weights of the next larger one
        means, s2, ll, w = _em(tokens, z, counts, v, w)
        fits.append((v, means, s2, ll))
    nu, means, s2, _ = max(fits, key=lambda fit: fit[3])
    s = s2.sqrt()
    # A class mean of n_k frames is noisy by (nu + 3) / (nu + 1) s^2 / n_k per dimension (the t location
    # estimate's variance): shrink it towards the grand mean by tau^2 / (tau^2 + that), tau^2 being the
    # means' spread above the noise, as LDA does per direction; unseen tokens sit at the grand mean.
    m = means / s
    n = float(counts.sum())
    grand = (counts[:, None] * m).sum(0) / n
    noise = (nu + 3.0) / (nu + 1.0)
    seen = counts > 0
    tau2 = ((counts[:, None] * (m - grand) ** 2).sum(0) / n - noise * float(seen.sum()) / n).clamp_min(1e-6)
    shrink = torch.where(seen[:, None], tau2 / (tau2 + noise / counts.clamp_min(1)[:, None]), torch.zeros_like(m))
    shrunk = grand + shrink * (m - grand)
    log_prior = torch.log((counts + 0.5) / (n + 0.5 * vocab))
    return StudentClassReference(side, shrunk, log_prior, center, scale * s, nu, tails)
