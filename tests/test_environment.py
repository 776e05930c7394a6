"""The installed environment works: every hard dependency imports and torchaudio's compiled ops load.

A torchaudio built for another torch release installs without complaint and fails only when its
library is loaded; these tests make that a CI failure of one line instead of a user's traceback.
"""
from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Distribution names whose import name differs.
IMPORT_NAME = {"pyyaml": "yaml"}


def _hard_dependencies() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = [ln.strip() for ln in cfg["options"]["install_requires"].splitlines() if ln.strip()]
    return [re.split(r"[<>=!~ ;\[]", ln, maxsplit=1)[0].lower() for ln in lines]


def test_the_list_of_hard_dependencies_is_read():
    deps = _hard_dependencies()
    assert {"torch", "torchaudio", "numpy", "pluggy", "safetensors", "soundfile"} <= set(deps)


@pytest.mark.parametrize("dist", _hard_dependencies())
def test_hard_dependency_imports(dist):
    try:
        importlib.import_module(IMPORT_NAME.get(dist, dist))
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        pytest.fail(f"{dist} does not import: {type(exc).__name__}: {exc}", pytrace=False)


def test_torchaudio_compiled_ops_load_against_this_torch():
    import torch

    from minecli.core.deps import load_torchaudio
    from minecli.core.errors import MinecliError

    try:
        ta = load_torchaudio()
    except MinecliError as exc:
        pytest.fail(str(exc), pytrace=False)
    # lfilter runs in libtorchaudio's C++ kernel: loading is not enough, the op must be callable.
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    y = ta.functional.lfilter(x, torch.tensor([1.0, -0.5]), torch.tensor([1.0, 0.0]), clamp=False)
    assert torch.allclose(y, torch.tensor([[1.0, 0.5, 0.25, 0.125]]))
    assert ta.__version__.split("+")[0] == torch.__version__.split("+")[0], "torch and torchaudio releases differ"


def test_a_torchaudio_that_cannot_load_is_one_line_naming_the_fix(monkeypatch):
    import builtins

    from minecli.core.deps import load_torchaudio
    from minecli.core.errors import MinecliError

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name.startswith("torchaudio"):
            raise OSError("Could not load this library: libtorchaudio.so: undefined symbol: torch_exception_x\n"
                          "second line of the loader's message")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(MinecliError) as info:
        load_torchaudio()
    msg = str(info.value)
    assert "\n" not in msg and "undefined symbol" in msg and "constraints.txt" in msg


def test_pinned_pair_matches_the_lock():
    """setup.cfg and constraints.txt name the same torch and torchaudio release."""
    cfg = (REPO / "setup.cfg").read_text()
    lock = (REPO / "constraints.txt").read_text()
    for dist in ("torch", "torchaudio"):
        pinned = re.search(rf"^\s+{dist}==(\S+)$", cfg, re.M)
        locked = re.search(rf"^{dist}==(\S+)$", lock, re.M)
        assert pinned and locked and pinned.group(1) == locked.group(1), dist
