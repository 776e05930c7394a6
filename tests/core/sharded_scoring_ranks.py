"""One rank of the sharded-scoring tests (test_sharded_scoring.py starts it as RANK of WORLD_SIZE, gloo on the CPU).

    python tests/core/sharded_scoring_ranks.py CASE OUT.pt

Also imported by the tests, which compute the same cases in one process without a process group.
"""
from __future__ import annotations

import datetime
import math
import os
import sys
import warnings

import numpy as np
import torch

from minecli.core.build import build_critic
from minecli.core.data import FrameBank
from minecli.core.scoring import score_bank
from minecli.core.settings import CriticConfig, HeadConfig
from minecli.core.spec import StreamSpec
from minecli.core.trainer import TrainConfig, Trainer

FLOAT2 = StreamSpec("float", 100.0, dim=2)
TOKENS = StreamSpec("index", 100.0, vocab_size=8)
#: uneven utterances, 101 frames: neither two nor three ranks get equal shares
LENGTHS = (13, 9, 21, 5, 17, 11, 25)


def _bank(lengths: tuple[int, ...], y_tokens: bool, seed: int) -> FrameBank:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for n in lengths:
        x = rng.standard_normal((n, 2)).astype(np.float32)
        if y_tokens:
            ys.append(((x[:, 0] > 0) * 4 + rng.integers(0, 4, n)).astype(np.int64))
        else:
            ys.append((x + rng.standard_normal((n, 2))).astype(np.float32))
        xs.append(x)
    return FrameBank.from_lists(xs, ys)


def _critic(spec_y: StreamSpec, context: int) -> torch.nn.Module:
    torch.manual_seed(0)
    critic = build_critic(FLOAT2, spec_y, context, 1 if spec_y.kind == "index" else context, HeadConfig(),
                          HeadConfig(), CriticConfig(hidden_dims=[16, 8]))
    _perturb(critic)
    return critic


def _perturb(critic: torch.nn.Module) -> None:
    """Weights well away from the near-zero output layer of a fresh critic, the same in every process."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in critic.parameters():
            if p.dtype.is_floating_point:
                p.add_(0.5 * torch.randn(p.shape, generator=g))


def score_cases(case: str, sharded: bool) -> dict[str, torch.Tensor]:
    """Joint and marginal scores of `case` and the negatives generator's state afterwards."""
    gen = torch.Generator().manual_seed(3)
    if case == "tiny":  # two frames: with three ranks, rank 0's share is empty
        bank, critic, neg, chunk = _bank((1, 1), False, 1), _critic(FLOAT2, 1), 3, 8192
    elif case == "drawn":  # negatives drawn chunk by chunk; chunks of 3 rows cross the shard boundaries
        bank, critic, neg, chunk = _bank(LENGTHS, False, 1), _critic(FLOAT2, 3), 6, 20
    elif case == "fixed":
        bank = _bank(LENGTHS, False, 1)
        neg = bank.other_utterance_frames(torch.Generator().manual_seed(5), torch.arange(bank.n_frames), 6)
        critic, chunk = _critic(FLOAT2, 3), 8192
    elif case == "tokens":  # a classifier over y's tokens: y encodes to integer labels
        bank, critic, neg, chunk = _bank(LENGTHS, True, 2), _critic(TOKENS, 1), 5, 64
    else:
        raise ValueError(case)
    tj, tm = score_bank(critic, bank, neg, 3 if case in ("drawn", "fixed") else 1, 1 if case in ("tokens", "tiny")
                        else 3, torch.device("cpu"), chunk, gen, sharded=sharded)
    return {"tj": tj, "tm": tm, "gen": gen.get_state()}


def trainer_case(distributed: bool) -> dict:
    """Validation, reference selection and the test estimate of one perturbed, untrained critic (with
    BatchNorm, whose statistics differ between ranks after DistributedDataParallel steps)."""
    rng = np.random.default_rng(4)

    def bank(lengths: tuple[int, ...]) -> FrameBank:
        xs = [rng.standard_normal((n, 2)).astype(np.float32) for n in lengths]
        return FrameBank.from_lists(xs, [(0.8 * x + 0.6 * rng.standard_normal(x.shape)).astype(np.float32)
                                         for x in xs])

    train, valid, test = bank((60,) * 10), bank((33, 27, 41)), bank(LENGTHS)
    with warnings.catch_warnings():  # the warning that BatchNorm biases estimates: beside the point here
        warnings.simplefilter("ignore")
        tr = Trainer(FLOAT2, FLOAT2, train, valid, test, critic=CriticConfig(hidden_dims=[16], batch_norm=True),
                     training=TrainConfig(steps=1, progress=False, bootstrap=50, null_permutations=9, seed=0),
                     distributed=distributed)
    _perturb(tr.model)
    norms = [m for m in tr.model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms
    if tr.rank:  # statistics of this rank's own batches, which rank 0's replace before scoring
        for m in norms:
            m.running_mean += 1.0
    valid_mi = tr.validate()
    tr.best_value = -math.inf if math.isnan(valid_mi) else valid_mi
    if tr.primary:
        tr.selection.candidate()
    tr.consider_reference()
    return {"valid_mi": valid_mi, "estimate": tr.estimate(), "reference": tr.reference_report,
            "scorer": type(tr.scorer).__name__}


def main(case: str, out: str) -> None:
    """Join the gloo group of the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), run `case`, save."""
    import torch.distributed as dist

    # a minute, not gloo's half hour: ranks that call different collectives then fail the test soon
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    try:
        result = trainer_case(True) if case == "trainer" else score_cases(case, True)
        torch.save(result, f"{out}.rank{dist.get_rank()}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    sys.stderr.flush()
    # Straight out, past interpreter teardown: on a loaded machine a gloo process can (rarely) abort there
    # after its work is done, and what the tests check is saved by now.
    os._exit(0)
