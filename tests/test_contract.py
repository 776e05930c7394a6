"""Every registered extractor keeps the same contract (minecli.testing.check_extractor).

One test, parametrised over the whole registry, so a new extractor is checked as soon as it is
registered. CASES says how to build the ones that need more than their defaults: weights that are
not available here (their own ``use_random_weights(seed)``), or side files (a ``setup`` callable).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from minecli import Extractor, StreamSpec, hookimpl
from minecli.core.registry import Registry, build_registry, reset_registry
from minecli.testing import Setup, check_extractor

PRECOMPUTED = {"kind": "float", "dim": 4, "frame_rate": 100.0}


def _write_textgrid(audio: str, wave: np.ndarray, rate: int) -> None:
    """An MFA-style alignment beside the audio: silence, two phones, silence."""
    from minecli.plugins.phones import write_textgrid

    d = wave.shape[-1] / rate
    phones = [(0.0, d / 4, ""), (d / 4, d / 2, "AH1"), (d / 2, 3 * d / 4, "S"), (3 * d / 4, d, "sil")]
    write_textgrid(Path(audio).with_suffix(".TextGrid"), {"phones": phones}, xmax=d)


def _write_features(audio: str, wave: np.ndarray, rate: int) -> str:
    """A ``.npy`` of round(duration x frame_rate) frames; its path is what the extractor is given."""
    n = int(round(wave.shape[-1] / rate * PRECOMPUTED["frame_rate"]))
    feats = np.random.default_rng(n).standard_normal((n, PRECOMPUTED["dim"])).astype(np.float32)
    path = str(Path(audio).with_suffix(".npy"))
    np.save(path, feats)
    return path


@dataclass(frozen=True)
class Case:
    """How to build one extractor for the contract check."""

    params: dict[str, Any] = field(default_factory=dict)
    #: call the extractor's use_random_weights(seed): its pretrained weights are not downloaded in tests
    random_weights: bool = False
    setup: Setup | None = None


CASES: dict[str, Case] = {
    "mel": Case(),
    "complex_spec": Case({"n_fft": 256}),
    "precomputed": Case(PRECOMPUTED, setup=_write_features),
    "phones": Case({"source": "textgrid"}, setup=_write_textgrid),
    "encodec": Case(random_weights=True),
    "mimi": Case({"n_codebooks": 4}, random_weights=True),
    "s3": Case(random_weights=True),
    "wav2vec2": Case(random_weights=True),
    # the example plugin (examples/minecli-kmeans), when it is installed
    "kmeans": Case({"base": "mel", "base_params": {"n_mels": 20}, "n_clusters": 8}),
}

_ADD_A_CASE = ("add an entry to CASES in tests/test_contract.py: Case(params={{...}}) for required params, "
               "random_weights=True if it offers use_random_weights(seed) for weights that are not available here, "
               "and setup=<callable writing side files> if it reads files beside the audio")


def _prepare(name: str) -> Callable[[Extractor], None]:
    def prepare(ext: Extractor) -> None:
        use = getattr(ext, "use_random_weights", None)
        if not callable(use):
            pytest.fail(f"extractor '{name}' is marked random_weights=True in tests/test_contract.py but has no "
                        "use_random_weights(seed) method; add one that builds the architecture with random weights")
        use(0)

    return prepare


def check_registered(name: str, registry: Registry) -> Any:
    """Run the contract check on a registry entry; an entry without a Case is tried with its defaults."""
    case = CASES.get(name)
    if case is not None:
        prepare = _prepare(name) if case.random_weights else None
        return check_extractor(name, case.params or None, prepare=prepare, setup=case.setup)
    entry = registry.get("extractor", name)
    try:
        return check_extractor(name)
    except AssertionError as exc:
        pytest.fail(f"extractor '{name}' from {entry.source} has no Case in tests/test_contract.py, and with its "
                    f"default params, no weights and no side files the contract check failed: {exc}\n"
                    f"If it needs more to run here, {_ADD_A_CASE.format()}.", pytrace=False)


def _registered() -> list[str]:
    return build_registry().names("extractor")


@pytest.mark.parametrize("name", _registered())
def test_extractor_keeps_the_contract(name):
    reset_registry(None)
    try:
        from minecli import get_registry

        report = check_registered(name, get_registry())
    finally:
        reset_registry(None)
    assert report.frames > 0
    assert set(report.edge_cases) == {"silence", "short", "wrong_rate"}


def test_every_case_names_a_registered_extractor():
    # A Case for a renamed or removed extractor would silently test nothing.
    optional = {"kmeans"}  # the example plugin is only registered when it is installed
    assert set(CASES) - optional <= set(_registered())


# ----------------------------------------------------------------------------- an entry without a Case
class _NeedsWeights(Extractor):
    """An extractor that cannot run without a download, and has no Case."""

    name = "needs_weights"

    def spec(self) -> StreamSpec:
        return StreamSpec("float", 50.0, dim=4, sample_rate=16000)

    def load(self) -> None:
        from minecli import WeightsNotFoundError

        raise WeightsNotFoundError("needs_weights: download the checkpoint first")

    def __call__(self, wave, sample_rate, path=None):  # pragma: no cover - load() fails first
        raise NotImplementedError


class _JustWorks(_NeedsWeights):
    """An extractor that runs with its defaults: checked without any Case."""

    name = "just_works"

    def load(self) -> None:
        pass

    def __call__(self, wave, sample_rate, path=None):
        import torch

        if sample_rate != 16000:
            raise ValueError(f"just_works expects 16000 Hz, got {sample_rate} Hz")
        n = int(round(wave.shape[-1] / sample_rate * 50))
        return torch.zeros(n, 4)


def _registry_with(*classes: type) -> Registry:
    import types

    @hookimpl
    def register_extractors(register):
        for cls in classes:
            register(cls)

    module = types.ModuleType("contract_fakes")
    module.register_extractors = register_extractors
    return build_registry([("contract_fakes", module)], autoload=False)


def test_an_entry_without_a_case_fails_and_says_what_to_add():
    reg = _registry_with(_NeedsWeights, _JustWorks)
    reset_registry(reg)
    try:
        assert check_registered("just_works", reg).frames == 50
        with pytest.raises(pytest.fail.Exception) as info:
            check_registered("needs_weights", reg)
    finally:
        reset_registry(None)
    msg = str(info.value)
    assert "'needs_weights'" in msg and "has no Case in tests/test_contract.py" in msg
    assert "download the checkpoint first" in msg
    assert "random_weights=True" in msg and "setup=" in msg
