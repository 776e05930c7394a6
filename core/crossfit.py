"""Cross-fitting of a selected closed-form critic: every sample scored once, by a reference fitted without it.

When the reference gives the estimate on one train/valid/test split, the test split (a fifth of the data by
default) alone carries the estimate's test noise. The reference costs a fit, not a training run, so it is
refitted for each other part of the data the size of the test split (fitted and validated on the rest, in
the split's train/valid ratio) and the parts' held-out estimates are averaged: the test noise falls by about
sqrt(1 / test fraction), 2.2x for a fifth. Nothing is retrained, and the trained critic the reference was
selected against is not compared again on the other parts. Large data (CROSS_FIT_MAX_FRAMES) and wide
float frames (CROSS_FIT_MAX_WIDTH) are not cross-fitted: there the refits cost more than the noise.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: data up to this many frames are cross-fitted; beyond it the test split's noise is small beside the cost
CROSS_FIT_MAX_FRAMES = 200_000
#: the most parts (the test split's included) the data are cut into
CROSS_FIT_MAX_PARTS = 10
#: float frames (times context) wider than this are not cross-fitted: a reference on a 513-bin spectrum
#: refits in ~1 s per 7,000 frames, and twelve more fits (four parts, each with its two halves) would
#: triple a run; there the training shortfall, not the test split's noise, dominates the error
CROSS_FIT_MAX_WIDTH = 256


def other_parts(plan: Sequence[torch.Tensor], split: Sequence[float], seed: int) -> list[list[torch.Tensor]]:
    """(train, valid, test) unit indices of the other parts, given the main split's ``plan``: its train and
    valid units cut into parts the size of its test split, each scored by a fit on everything else.

    None come back when a part or its valid split would hold fewer than two units (utterances or blocks).
    """
    train, valid, test = plan
    rest = torch.cat([train, valid])
    m = min(CROSS_FIT_MAX_PARTS - 1, int(round(len(rest) / max(1, len(test)))))
    if m < 1:
        return []
    gen = torch.Generator().manual_seed(seed + 200)
    order = rest[torch.randperm(len(rest), generator=gen)]
    cuts = np.linspace(0, len(order), m + 1).round().astype(int)
    every = torch.cat([rest, test])
    plans = []
    for k in range(m):
        part = order[cuts[k]:cuts[k + 1]]
        others = every[~torch.isin(every, part)]
        others = others[torch.randperm(len(others), generator=gen)]
        n_valid = int(round(len(others) * split[1] / (split[0] + split[1])))
        if len(part) < 2 or n_valid < 2 or len(others) - n_valid < 2:
            return []
        plans.append([torch.sort(others[n_valid:]).values, torch.sort(others[:n_valid]).values,
                      torch.sort(part).values])
    return plans
