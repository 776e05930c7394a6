"""A built wheel installs everything under ``minecli/`` and declares the console script and plugins."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import minecli

REPO = Path(__file__).resolve().parents[1]
# Left out of the copy that is built: environments, build output, caches and local run data.
_IGNORE = shutil.ignore_patterns(".venv", "venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                 ".pytest_cache", ".cache", "runs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """Build a wheel from a copy of the repository (the working tree is left untouched)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    out = root / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"wheel build failed:\n{proc.stdout}\n{proc.stderr}"
    (path,) = out.glob("minecli-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def _dist_info(wheel: zipfile.ZipFile) -> str:
    (info,) = {n.split("/")[0] for n in wheel.namelist() if n.split("/")[0].endswith(".dist-info")}
    return info


@pytest.mark.slow
def test_wheel_holds_one_top_level_package(wheel):
    names = set(wheel.namelist())
    for required in ("minecli/__init__.py", "minecli/_version.py", "minecli/cli.py", "minecli/core/__init__.py",
                     "minecli/core/registry.py", "minecli/core/hookspecs.py", "minecli/plugins/__init__.py",
                     "minecli/plugins/spectrogram.py", "minecli/testing.py",
                     # python -m minecli, which torchrun -m minecli starts on every rank
                     "minecli/__main__.py", "minecli/core/distributed.py", "minecli/core/batching.py"):
        assert required in names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"minecli", _dist_info(wheel)}, f"unexpected top-level entries: {sorted(tops)}"
    assert not [n for n in names if n.startswith(("core/", "plugins/", "tests/", "minecli/tests/"))]
    assert wheel.read(f"{_dist_info(wheel)}/top_level.txt").decode().split() == ["minecli"]


@pytest.mark.slow
def test_wheel_metadata_and_entry_points(wheel):
    info = _dist_info(wheel)
    assert info == f"minecli-{minecli.__version__}.dist-info"
    metadata = wheel.read(f"{info}/METADATA").decode()
    assert "Name: minecli" in metadata and f"Version: {minecli.__version__}" in metadata

    eps = configparser.ConfigParser()
    eps.read_string(wheel.read(f"{info}/entry_points.txt").decode())
    assert eps["console_scripts"]["minecli"] == "minecli.cli:main"
    plugins = dict(eps["minecli.plugins"])
    assert plugins["spectrogram"] == "minecli.plugins.spectrogram"
    names = set(wheel.namelist())
    for name, target in plugins.items():
        assert target.startswith("minecli."), f"plugin {name} points outside the package: {target}"
        module_file = target.split(":")[0].replace(".", "/") + ".py"
        assert module_file in names, f"plugin {name} -> {target}, but {module_file} is not in the wheel"


@pytest.mark.slow
def test_the_suite_runs_from_a_checkout_folder_whose_name_is_not_an_identifier(tmp_path):
    """A clone into 'minecli-main': pytest imports the root __init__.py as a plain file there."""
    dest = tmp_path / "minecli-main"
    shutil.copytree(REPO, dest, ignore=_IGNORE)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_configs.py", "tests/core/test_bounds.py"],
                          cwd=dest, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "error" not in proc.stdout.splitlines()[-1]
