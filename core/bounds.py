"""Variational lower bounds on mutual information, as pure functions of critic scores.

Every function takes ``t_joint`` ``[N]`` (scores of paired samples) and ``t_marg`` ``[N, K]``
(scores of x_i against K samples of y drawn from the marginal) and works in log space, so large
scores never overflow.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def log_mean_exp(t: torch.Tensor) -> torch.Tensor:
    """log(mean(exp(t))) over all elements, computed stably."""
    flat = t.reshape(-1)
    return torch.logsumexp(flat, dim=0) - math.log(flat.numel())


def frame_log_mean_exp(t_marg: torch.Tensor) -> torch.Tensor:
    """Each frame's log-mean-exp over its K marginal scores, ``[N, 1]``: for a bound that reads the marginal
    scores only through their overall log-mean-exp, a resample of frames then costs N numbers, not N x K."""
    return torch.logsumexp(t_marg, 1, keepdim=True) - math.log(t_marg.shape[1])


def dv_bound(t_joint: torch.Tensor, t_marg: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan: E_P[T] - log E_Q[e^T]."""
    return t_joint.mean() - log_mean_exp(t_marg)


def mine_loss(t_joint: torch.Tensor, t_marg: torch.Tensor, log_ema: float | None,
              decay: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MINE's bias-corrected DV loss: the gradient of log E_Q[e^T] uses a moving average denominator.

    Returns (loss, dv value, new log of the moving average). The surrogate exp(lme - log_ema) has
    the gradient grad(E_Q[e^T]) / ema and is a ratio near 1, so it cannot overflow.
    """
    lme = log_mean_exp(t_marg)
    batch = float(lme.detach())
    if log_ema is None or not math.isfinite(log_ema):
        new = batch
    else:
        new = float(torch.logaddexp(torch.tensor(math.log(decay) + log_ema),
                                    torch.tensor(math.log1p(-decay) + batch)))
    surrogate = torch.exp(lme - new)
    loss = -(t_joint.mean() - surrogate)
    return loss, (t_joint.mean() - lme).detach(), new


def nwj_bound(t_joint: torch.Tensor, t_marg: torch.Tensor) -> torch.Tensor:
    """Nguyen-Wainwright-Jordan (f-divergence) bound: E_P[T] - E_Q[e^(T-1)]."""
    return t_joint.mean() - torch.exp(log_mean_exp(t_marg - 1.0))


def infonce_bound(t_joint: torch.Tensor, t_marg: torch.Tensor) -> torch.Tensor:
    """InfoNCE with K negatives per positive: at most log(K + 1)."""
    scores = torch.cat([t_joint[:, None], t_marg], dim=1)
    return (t_joint - torch.logsumexp(scores, dim=1)).mean() + math.log(scores.shape[1])


def js_bound(t_joint: torch.Tensor, t_marg: torch.Tensor) -> torch.Tensor:
    """The Jensen-Shannon f-GAN objective, a smooth training signal for SMILE."""
    return (-F.softplus(-t_joint)).mean() - F.softplus(t_marg).mean()


def smile_bound(t_joint: torch.Tensor, t_marg: torch.Tensor, tau: float) -> torch.Tensor:
    """SMILE (Song and Ermon 2020): DV with the partition term's scores clipped to [-tau, tau]."""
    return t_joint.mean() - log_mean_exp(torch.clamp(t_marg, -tau, tau))
