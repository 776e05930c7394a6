"""Frame banks: context windows, segment crops and marginal draws respect utterance boundaries."""
from __future__ import annotations

import pytest
import torch

from minecli.core.data import FrameBank, Normalizer


def _bank(lengths):
    xs = [torch.arange(n, dtype=torch.float32)[:, None] + 1000 * i for i, n in enumerate(lengths)]
    ys = [torch.full((n, 1), i, dtype=torch.long) for i, n in enumerate(lengths)]
    return FrameBank.from_lists(xs, ys)


def test_windows_are_clamped_inside_each_utterance():
    bank = _bank([3, 5])
    win = bank.windows(torch.tensor([0, 2, 3, 7]), 3)
    assert win.tolist() == [[0, 0, 1], [1, 2, 2], [3, 3, 4], [6, 7, 7]]
    x, y = bank.gather(torch.tensor([3]), 3, 1)
    assert x.shape == (1, 3, 1) and y.shape == (1, 1, 1)


def test_segments_stay_in_one_utterance_and_cover_whole_utterances():
    bank = _bank([40, 7, 100])
    g = torch.Generator().manual_seed(0)
    seen_starts = set()
    for _ in range(200):
        idx = bank.sample_segments(g, 4, 10).reshape(4, 10)
        utt = bank.utt[idx]
        assert (utt == utt[:, :1]).all()
        seen_starts.update(int(i) for i in idx[:, 0] - bank.start[idx[:, 0]])
    # Crops start anywhere in an utterance, not only at its beginning.
    assert max(seen_starts) > 50


def test_marginal_draws_come_from_other_utterances_and_are_uniform():
    bank = _bank([10, 20, 30])
    g = torch.Generator().manual_seed(1)
    frames = torch.arange(bank.n_frames)
    neg = bank.other_utterance_frames(g, frames, 200)
    assert (bank.utt[neg] != bank.utt[frames][:, None]).all()
    # Frames of utterance 0 should draw from utterances 1 and 2 in proportion 20:30.
    from_u2 = (bank.utt[neg[:10]] == 2).float().mean()
    assert abs(float(from_u2) - 0.6) < 0.05


def test_normalizer_uses_given_statistics():
    train = torch.tensor([[0.0, 5.0], [2.0, 5.0]])
    norm = Normalizer.fit(train, "standard")
    out = norm(torch.tensor([[1.0, 5.0]]))
    assert torch.allclose(out, torch.tensor([[0.0, 0.0]]))  # constant column keeps scale 1
    mm = Normalizer.fit(train, "minmax")
    assert torch.allclose(mm(torch.tensor([[2.0, 5.0]])), torch.tensor([[1.0, 0.0]]))
    assert Normalizer.fit(torch.tensor([[1], [2]]), "standard").method == "none"  # index streams untouched


def test_subset_utts_keeps_whole_utterances_in_order():
    bank = _bank([3, 4, 5])
    sub = bank.subset_utts(torch.tensor([2, 0]))
    assert sub.offsets.tolist() == [0, 5, 8]
    assert sub.y[:, 0].tolist() == [2] * 5 + [0] * 3


def test_normal_scores_are_standard_normal_and_ignore_monotone_warps():
    """Normal scores depend on ranks only: cube and exp of the data give the same scores."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50_000, 2, generator=gen)
    z = Normalizer.fit(x, "normal_score")(x)
    # 50k draws: the sample moments of N(0,1) sit within ~0.01 of 0 and 1; binning adds < 0.005.
    assert z.mean(0).abs().max() < 0.02 and (z.std(0) - 1).abs().max() < 0.02
    warped = torch.stack([x[:, 0] ** 3, x[:, 1].exp()], 1)
    zw = Normalizer.fit(warped, "normal_score")(warped)
    # The CDF is linear inside each of 8,192 bins on an asinh scale: where a warp packs much mass into
    # few bins (the flat middle of x^3) a score moves by up to ~0.05, elsewhere by far less.
    diff = (zw - z).abs()
    assert diff.median() < 0.005 and diff.quantile(0.99) < 0.06
    # An affine map of a Gaussian is its normal score, up to sampling noise of the quantiles.
    assert torch.corrcoef(torch.stack([z[:, 0], x[:, 0]]))[0, 1] > 0.999


def test_normal_scores_are_bounded_and_fitted_on_train_only():
    train = torch.randn(10_000, 3)
    norm = Normalizer.fit(train, "normal_score")
    far = norm(torch.tensor([[1e12, -1e12, float(train[:, 2].median())]]))
    # Beyond every train value the score stops at Phi^-1(1 - 1/2n), n = 10,000: 3.89.
    assert far[0, 0] == pytest.approx(3.89, abs=0.01) and far[0, 1] == pytest.approx(-3.89, abs=0.01)
    assert abs(float(far[0, 2])) < 0.01  # the train median maps to 0
    assert norm.state()["method"] == "normal_score"


def test_normal_scores_give_a_tie_its_mid_rank():
    """A point mass (a log-mel floor, a constant bin) maps to one value in the middle of its mass."""
    x = torch.cat([torch.zeros(5_000), torch.rand(5_000) + 1])[:, None]
    const = torch.zeros(100, 1)
    z = Normalizer.fit(x, "normal_score")(x)
    assert z[:5_000].unique().numel() == 1
    # half of the train mass sits at 0: its mid-rank is 0.25, Phi^-1(0.25) = -0.674
    assert float(z[0, 0]) == pytest.approx(-0.674, abs=0.01)
    assert float(Normalizer.fit(const, "normal_score")(const).abs().max()) < 1e-6


def test_auto_normalization_gives_normal_scores_to_heavy_tailed_dimensions_only():
    gen = torch.Generator().manual_seed(3)
    light = torch.randn(20_000, 2, generator=gen)
    heavy = torch.randn(20_000, 1, generator=gen) ** 5  # kurtosis in the hundreds
    x = torch.cat([light, heavy], 1)
    norm = Normalizer.fit(x, "auto")
    assert norm.ranked is not None and norm.ranked.tolist() == [False, False, True]
    z = norm(x)
    # light dimensions are plain standard scores
    assert torch.allclose(z[:, :2], (light - light.mean(0)) / light.std(0), atol=1e-4)
    # the heavy one is bounded by its normal score, Phi^-1(1 - 1/40,000) = 4.06
    assert float(z[:, 2].abs().max()) < 4.1 and float(((x[:, 2] - x[:, 2].mean()) / x[:, 2].std()).abs().max()) > 20
    assert norm.state()["normal_score_dims"] == 1
    assert Normalizer.fit(light, "auto").ranked is None
