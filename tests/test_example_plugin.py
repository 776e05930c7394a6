"""The example plugin package, installed for real: found through its entry point, listed with its
package and version, keeping the contract, running its shipped config; a broken package next to it is
reported and skipped while the CLI keeps working."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from minecli.core import registry
from minecli.core.registry import get_registry, reset_registry
from minecli.testing import check_extractor
from minecli.testing import invoke_cli as invoke

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "minecli-kmeans"
CONFIG = EXAMPLE / "configs" / "kmeans-mel.yaml"
_IGNORE = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache")


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """``pip install --target`` of the example package (built from a copy, so the tree stays clean)."""
    root = tmp_path_factory.mktemp("example")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=_IGNORE)
    site = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "--target", str(site), str(src)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"installing the example failed:\n{proc.stdout}\n{proc.stderr}"
    return site


def _broken_dist(root: Path) -> Path:
    """A third-party distribution whose plugin module fails to import."""
    info = root / "minecli_broken-0.3.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: minecli-broken\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nbroken = minecli_broken_plugin\n")
    (root / "minecli_broken_plugin.py").write_text("import a_library_that_is_not_installed\n")
    return root


@pytest.fixture
def installed(example_site, monkeypatch):
    """The example installed (its entry point visible), with a fresh registry; everything undone afterwards."""
    for var in (registry.ENV_DISABLE_AUTOLOAD, registry.ENV_TRACE, registry.ENV_STRICT, registry.ENV_DISABLE):
        monkeypatch.delenv(var, raising=False)
    # The source tree may already be imported (the example's own tests); load the installed copy instead.
    for name in [m for m in sys.modules if m == "minecli_kmeans" or m.startswith("minecli_kmeans.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(example_site))
    reset_registry(None)
    yield example_site
    reset_registry(None)
    for name in [m for m in sys.modules if m == "minecli_kmeans" or m.startswith("minecli_kmeans.")]:
        sys.modules.pop(name, None)


def test_installed_package_is_found_through_its_entry_point(installed):
    entry = get_registry().get("extractor", "kmeans")
    assert (entry.source.plugin, entry.source.package, entry.source.version) == ("kmeans", "minecli-kmeans", "0.1.0")
    assert sys.modules[entry.obj.__module__].__file__.startswith(str(installed))
    assert get_registry().failures == []


def test_plugins_list_shows_package_and_version(installed):
    result = invoke("plugins", "list", "kmeans")
    assert result.exit_code == 0, result.output
    row = result.stdout.splitlines()[1].split()
    assert row == ["kmeans", "extractor", "index", "100", "Hz", "100", "minecli-kmeans", "0.1.0"]
    doc = json.loads(invoke("plugins", "list", "--json").stdout)
    rows = {r["name"]: r for r in doc["plugins"]}
    assert (rows["kmeans"]["package"], rows["kmeans"]["version"]) == ("minecli-kmeans", "0.1.0")
    assert rows["mel"]["package"] == "minecli"
    shown = invoke("plugins", "show", "kmeans").stdout
    assert "kmeans (extractor) from minecli-kmeans 0.1.0" in shown and "n_clusters (int, default 100)" in shown


def test_installed_plugin_keeps_the_contract(installed):
    report = check_extractor("kmeans", {"base": "mel", "base_params": {"n_mels": 20}, "n_clusters": 8})
    assert report.spec.vocab_size == 8 and report.spec.frame_rate == 100.0


def test_shipped_config_runs_end_to_end(installed, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository root, as documented in it
    quick = ["data.max_files=4", f"data.cache_dir={tmp_path / 'cache'}", f"output.dir={tmp_path / 'out'}",
             "x.params.n_clusters=16", "training.steps=20", "training.validate_every=10", "training.batch_size=64",
             "training.progress=false", "training.bootstrap=20", "training.null_permutations=0",
             "estimator.eval_negatives=8"]
    checked = invoke("validate", str(CONFIG), *quick)
    assert checked.exit_code == 0, checked.output
    assert "x: kmeans -> index 16 @ 100 Hz" in checked.stdout
    result = invoke("run", str(CONFIG), *quick, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["streams"]["x"]["extractor"] == "kmeans" and doc["streams"]["x"]["spec"]["vocab_size"] == 16
    assert doc["frames"]["test"] > 100 and doc["mi_nats"] > 0
    assert len(list((tmp_path / "cache" / "kmeans").glob("codebook-*.safetensors"))) == 1
    assert yaml.safe_load(CONFIG.read_text())["x"]["extractor"] == "kmeans"


def test_a_broken_package_is_reported_and_skipped(installed, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(_broken_dist(tmp_path / "broken-site")))
    result = invoke("plugins", "list")
    assert result.exit_code == 0
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert failed == ["FAILED  broken (minecli-broken): ModuleNotFoundError: No module named "
                      "'a_library_that_is_not_installed'"]
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:] if not line.startswith("FAILED")]
    assert {"kmeans", "mel", "mine"} <= set(listed)
    assert "plugin 'broken' (minecli-broken) was skipped" in result.stderr
    doc = json.loads(invoke("plugins", "list", "--json").stdout)
    assert [(f["plugin"], f["package"]) for f in doc["failed"]] == [("broken", "minecli-broken")]
    # the rest of the CLI works, third-party plugin included
    assert invoke("plugins", "show", "kmeans").exit_code == 0
    monkeypatch.chdir(REPO)
    assert invoke("validate", str(CONFIG)).exit_code == 0

    # MINECLI_DISABLE_PLUGINS silences it; MINECLI_DISABLE_PLUGIN_AUTOLOAD leaves only the built-ins
    monkeypatch.setenv(registry.ENV_DISABLE, "broken")
    reset_registry(None)
    out = invoke("plugins", "list").stdout
    assert "FAILED" not in out and "kmeans" in out
    monkeypatch.delenv(registry.ENV_DISABLE)
    monkeypatch.setenv(registry.ENV_DISABLE_AUTOLOAD, "1")
    reset_registry(None)
    out = invoke("plugins", "list").stdout
    assert "FAILED" not in out and "kmeans" not in out and "mel" in out

    # MINECLI_STRICT_PLUGINS turns the broken package into a one-line error
    monkeypatch.delenv(registry.ENV_DISABLE_AUTOLOAD)
    monkeypatch.setenv(registry.ENV_STRICT, "1")
    reset_registry(None)
    strict = invoke("plugins", "list")
    assert strict.exit_code == 1
    assert "plugin 'broken' (minecli-broken) failed to load: ModuleNotFoundError" in strict.stderr
