"""docs/writing-plugins.md cannot fall behind the code: every hook documented with its arguments, and
the minimal plugin, its packaging snippet and its test run as written."""
from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from minecli import make_extractor
from minecli.core import hookspecs, registry
from minecli.core.registry import build_registry, reset_registry
from minecli.testing import check_extractor

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "writing-plugins.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _section(title: str) -> str:
    """The text under a '## ' heading, up to the next '## ' heading."""
    parts = re.split(r"^## ", _text(), flags=re.M)
    found = [p for p in parts if p.startswith(title + "\n")]
    assert found, f"docs/writing-plugins.md has no '## {title}' section"
    return found[0]


def _blocks(text: str, lang: str) -> list[str]:
    return [body for kind, body in _FENCE.findall(text) if kind == lang]


def _hookspecs() -> dict[str, list[str]]:
    """Every hook declared in core/hookspecs.py with its argument names, in order."""
    specs = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(fn, f"{hookspecs.PROJECT}_spec"):
            specs[name] = list(inspect.signature(fn).parameters)
    return specs


def _documented_hooks() -> dict[str, tuple[list[str], str]]:
    """'### `hook(arg, ...)`' headings of the hook reference: name -> (arguments, the text under it)."""
    out = {}
    parts = re.split(r"^### ", _section("Hook reference"), flags=re.M)[1:]
    for part in parts:
        m = re.match(r"`(\w+)\(([^)]*)\)`\n", part)
        if m:
            args = [a.strip() for a in m.group(2).split(",") if a.strip()]
            out[m.group(1)] = (args, part[m.end():])
    return out


def test_there_are_hooks_to_document():
    assert {"register_extractors", "register_heads", "register_estimators", "register_commands"} <= set(_hookspecs())


@pytest.mark.parametrize("hook", sorted(_hookspecs()))
def test_every_hook_is_documented_with_all_its_arguments(hook):
    documented = _documented_hooks()
    assert hook in documented, f"hook {hook} is not in the hook reference of docs/writing-plugins.md"
    args, body = documented[hook]
    assert args == _hookspecs()[hook], (f"docs/writing-plugins.md documents {hook}({', '.join(args)}) but "
                                        f"core/hookspecs.py declares {hook}({', '.join(_hookspecs()[hook])})")
    for arg in args:
        assert re.search(rf"^- `{arg}`: \S", body, re.M), f"argument '{arg}' of {hook} has no '- `{arg}`: ...' line"


def test_the_reference_documents_no_hook_that_does_not_exist():
    assert set(_documented_hooks()) <= set(_hookspecs())


def _minimal_plugin() -> str:
    blocks = _blocks(_section("A minimal plugin"), "python")
    assert blocks, "the minimal plugin section has no python code block"
    return blocks[0]


@pytest.fixture
def loudness_module(tmp_path, monkeypatch):
    """The minimal plugin from the guide, saved as minecli_loudness.py and imported."""
    path = tmp_path / "minecli_loudness.py"
    path.write_text(_minimal_plugin(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("minecli_loudness", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "minecli_loudness", module)  # dataclasses look their module up while executing
    spec.loader.exec_module(module)
    yield module
    reset_registry(None)


def test_the_minimal_plugin_registers_and_keeps_the_contract(loudness_module):
    reg = build_registry(extra_plugins=[("loudness", loudness_module)], autoload=False)
    assert reg.failures == []
    assert reg.get("extractor", "loudness").summary == "frame loudness, RMS in dB (1-d)"
    reset_registry(reg)
    report = check_extractor("loudness")
    assert report.frames == 100 and report.edge_cases["silence"] == "ok (100 frames)"
    assert check_extractor("loudness", {"frame_rate": 50}).frames == 50
    # and it measures what it says: silence sits at the floor, a full-scale square wave at 0 dB
    ext = make_extractor("loudness")
    assert torch.all(ext(torch.zeros(1, 1600), 16000) == -100.0)
    square = torch.sign(torch.sin(torch.arange(1600) * 0.05)) * torch.ones(2, 1600)
    assert torch.allclose(ext(square, 16000), torch.zeros(10, 1), atol=0.1)


def test_the_packaging_snippet_declares_the_minimal_plugin(loudness_module):
    (toml,) = _blocks(_section("Packaging and the entry point"), "toml")
    meta = tomllib.loads(toml)
    group = meta["project"]["entry-points"][registry.ENTRY_POINT_GROUP]
    assert group == {"loudness": loudness_module.__name__}
    (ini,) = _blocks(_section("Packaging and the entry point"), "ini")
    assert f"{registry.ENTRY_POINT_GROUP} =\n    loudness = minecli_loudness" in ini


@pytest.mark.slow
def test_the_documented_plugin_test_passes(tmp_path):
    """The test shown under 'Testing your plugin', run by pytest next to the minimal plugin."""
    (test_code,) = [b for b in _blocks(_section("Testing your plugin"), "python") if "def test_" in b]
    (tmp_path / "minecli_loudness.py").write_text(_minimal_plugin(), encoding="utf-8")
    (tmp_path / "test_loudness.py").write_text(test_code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINECLI_")}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_loudness.py")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_the_debugging_switches_are_the_real_ones():
    section = _section("Debugging plugin loading")
    for var in (registry.ENV_TRACE, registry.ENV_STRICT, registry.ENV_DISABLE_AUTOLOAD, registry.ENV_DISABLE):
        assert f"`{var}" in section, f"{var} is not documented"
    documented = set(re.findall(r"MINECLI_[A-Z_]+", _text()))
    real = {registry.ENV_TRACE, registry.ENV_STRICT, registry.ENV_DISABLE_AUTOLOAD, registry.ENV_DISABLE}
    assert documented <= real, f"the guide mentions switches that do not exist: {sorted(documented - real)}"


def test_the_readme_links_the_guide():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/writing-plugins.md)" in readme
