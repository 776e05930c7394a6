"""Class references over the token tuples of several codebooks, against ground truth."""
from __future__ import annotations

import numpy as np
import torch

import minecli
from minecli.core.reference import TUPLE_MIN_FRAMES, TupleClassReference, _fit_tuple_classes

FAST = dict(progress=False, null_permutations=0, bootstrap=50, validate_every=50, baseline=False)


def _interacting(n: int, seed: int, books: int = 2, vocab: int = 8, dim: int = 6):
    """Tokens [n, books] and y = M[tuple] + noise, a mean per tuple; and the truth by Monte Carlo."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((vocab**books, dim)) * 0.7
    place = vocab ** np.arange(books)
    t = rng.integers(0, vocab, (n, books))
    y = means[t @ place] + rng.standard_normal((n, dim))
    mc = rng.standard_normal((50_000, dim)) + means[(k := rng.integers(0, vocab**books, 50_000))]
    ll = -0.5 * ((mc[:, None, :] - means[None]) ** 2).sum(-1)
    top = ll.max(1, keepdims=True)
    truth = float((ll[np.arange(len(k)), k] - top[:, 0] - np.log(np.exp(ll - top).mean(1))).mean())
    return t, y.astype(np.float32), truth


def test_codebooks_that_interact_get_the_classes_of_their_tuples():
    t, y, truth = _interacting(8000, 0)
    res = minecli.estimate_mi(t, y, seed=0, steps=400, **FAST)
    assert "over the token tuples seen in training" in res.critic
    # 64 tuples x 6 dims from 5,600 train frames: the test split's noise is ~0.04 nats (its interval);
    # the additive model reads a fraction of the truth here (0.15 of 1.57 nats over 2 x 16 tokens)
    assert abs(res.mi_nats - truth) < 0.08, (res.mi_nats, truth)


def test_an_unseen_tuple_scores_as_the_class_without_frames():
    t, y, _ = _interacting(3000, 1)
    seen = torch.as_tensor(t)
    keep = ~((seen[:, 0] == 7) & (seen[:, 1] == 7))  # one tuple never seen in training
    refs = _fit_tuple_classes("x", seen[keep], torch.as_tensor(y)[keep], 8, None)
    assert refs and all(isinstance(r, TupleClassReference) for r in refs)
    ref = refs[0]
    with torch.no_grad():
        rows = ref.encode_x(torch.tensor([[7, 7], [0, 0]]))
        inner_unseen = ref.inner.encode_x(torch.tensor([ref.codes.numel()]))
        inner_seen = ref.inner.encode_x(torch.tensor([int((ref.codes == 0).nonzero())]))
        assert torch.equal(rows[0], inner_unseen[0]) and torch.equal(rows[1], inner_seen[0])
        scores = ref._t(rows[:, None], ref.encode_y(torch.as_tensor(y[:5]))[None])
    assert torch.isfinite(scores).all()


def test_no_tuple_classes_when_the_tuples_are_too_many_for_their_frames_or_their_codes_overflow():
    rng = np.random.default_rng(2)
    many = torch.as_tensor(rng.integers(0, 64, (1000, 2)))  # ~970 tuples seen among 4,096
    assert many.unique(dim=0).shape[0] * TUPLE_MIN_FRAMES > 1000
    assert _fit_tuple_classes("x", many, torch.randn(1000, 3), 64, None) == []
    wide = torch.zeros(100, 8, dtype=torch.long)  # 8 codebooks of 1,024: 80-bit codes
    assert _fit_tuple_classes("x", wide, torch.randn(100, 3), 1024, None) == []
