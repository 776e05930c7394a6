"""The command line through click's CliRunner, and the import cost of listing plugins."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

import minecli
from minecli import Extractor, StreamSpec, hookimpl
from minecli.core import registry
from minecli.core.registry import build_registry, reset_registry
from minecli.testing import invoke_cli as invoke

MODEL_LIBRARIES = ("encodec", "s3tokenizer", "transformers", "torch")


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Each test sees the installed plugins only, and leaves no registry behind."""
    for var in (registry.ENV_DISABLE_AUTOLOAD, registry.ENV_TRACE, registry.ENV_STRICT, registry.ENV_DISABLE):
        monkeypatch.delenv(var, raising=False)
    reset_registry(None)
    yield
    reset_registry(None)


def table_names(output: str) -> list[str]:
    lines = output.strip().splitlines()
    assert lines[0].split()[:2] == ["NAME", "KIND"]
    return [line.split()[0] for line in lines[1:] if not line.startswith(("FAILED", "(no "))]


# ----------------------------------------------------------------------------- basics
def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"minecli, version {minecli.__version__}"


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("plugins", "run", "validate", "extract"):
        assert f"  {command}" in result.stdout


def test_unknown_option_is_a_usage_error():
    result = invoke("plugins", "list", "--no-such-option")
    assert result.exit_code == 2
    assert "No such option" in result.stderr and "--no-such-option" in result.stderr
    assert result.stdout == ""


def test_unknown_command_and_bad_choice_are_usage_errors():
    assert invoke("plugin").exit_code == 2
    result = invoke("plugins", "list", "--kind", "codec")
    assert result.exit_code == 2
    assert "'codec' is not one of 'extractor', 'head', 'estimator'" in result.stderr


# ----------------------------------------------------------------------------- plugins list
def test_plugins_list_json():
    result = invoke("plugins", "list", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    rows = {r["name"]: r for r in doc["plugins"]}
    assert {"complex_spec", "mel", "embedding", "projection", "mine"} <= set(rows)
    assert doc["failed"] == []
    mel = rows["mel"]
    assert (mel["kind"], mel["stream_kind"], mel["frame_rate"], mel["dim"]) == ("extractor", "float", 100.0, 80)
    assert (mel["package"], mel["version"], mel["plugin"]) == ("minecli", minecli.__version__, "spectrogram")
    assert rows["complex_spec"]["dim"] == 2 * (512 // 2 + 1)
    assert rows["embedding"]["kind"] == "head" and rows["embedding"]["stream_kind"] == "index"
    assert rows["projection"]["stream_kind"] == "float"
    assert rows["mine"]["kind"] == "estimator" and rows["mine"]["lower_bound"] is True
    assert all(r["summary"] for r in doc["plugins"])


def test_plugins_list_table():
    result = invoke("plugins", "list")
    assert result.exit_code == 0
    names = table_names(result.stdout)
    assert {"complex_spec", "mel", "embedding", "projection", "mine"} <= set(names)
    mel_line = next(line for line in result.stdout.splitlines() if line.startswith("mel "))
    assert mel_line.split() == ["mel", "extractor", "float", "100", "Hz", "80-d", "minecli", minecli.__version__]


def test_plugins_list_pattern():
    result = invoke("plugins", "list", "me*")
    assert result.exit_code == 0
    assert table_names(result.stdout) == ["mel"]
    doc = json.loads(invoke("plugins", "list", "*spec", "--json").stdout)
    assert [r["name"] for r in doc["plugins"]] == ["complex_spec"]


def test_plugins_list_kind():
    result = invoke("plugins", "list", "--kind", "estimator")
    assert result.exit_code == 0
    names = table_names(result.stdout)
    assert "mine" in names
    assert not {"mel", "complex_spec", "embedding", "projection"} & set(names)
    doc = json.loads(invoke("plugins", "list", "--kind", "head", "--json").stdout)
    assert {r["kind"] for r in doc["plugins"]} == {"head"}


def test_plugins_list_without_a_match():
    result = invoke("plugins", "list", "zzz*")
    assert result.exit_code == 0
    assert "(no plugin matches)" in result.stdout
    assert json.loads(invoke("plugins", "list", "zzz*", "--json").stdout)["plugins"] == []


def test_plugins_list_shows_broken_plugins_and_still_succeeds():
    @hookimpl
    def register_extractors(register):
        raise RuntimeError("weights server down")

    broken = types.ModuleType("broken")
    broken.register_extractors = register_extractors
    reset_registry(build_registry([("broken", broken)], autoload=False))

    result = invoke("plugins", "list")
    assert result.exit_code == 0
    assert "FAILED  broken (broken): RuntimeError: weights server down" in result.stdout
    assert "mel" in table_names(result.stdout)
    doc = json.loads(invoke("plugins", "list", "--json").stdout)
    assert doc["failed"] == [{"plugin": "broken", "package": "broken", "reason": "RuntimeError: weights server down"}]


def test_strict_mode_makes_a_broken_plugin_a_one_line_error(monkeypatch):
    @hookimpl
    def register_extractors(register):
        raise RuntimeError("weights server down")

    broken = types.ModuleType("broken")
    broken.register_extractors = register_extractors
    build = registry.build_registry
    monkeypatch.setattr(registry, "build_registry", lambda: build([("broken", broken)], autoload=False))
    assert invoke("plugins", "list").exit_code == 0
    reset_registry(None)
    monkeypatch.setenv(registry.ENV_STRICT, "1")
    result = invoke("plugins", "list")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "plugin 'broken' (broken) failed to load: RuntimeError: weights server down" in lines[0]


def test_a_fake_plugin_is_listed_while_registered():
    class Tokens(Extractor):
        """Fake tokens."""

        name = "fake_tokens"

        def spec(self):
            return StreamSpec("index", 50, vocab_size=4096, n_codebooks=2)

        def __call__(self, wave, sample_rate, path=None):  # pragma: no cover - never called
            raise NotImplementedError

    @hookimpl
    def register_extractors(register):
        register(Tokens)

    plugin = types.ModuleType("tokens_plugin")
    plugin.register_extractors = register_extractors
    reset_registry(build_registry([("tokens", plugin)], autoload=False))
    result = invoke("plugins", "list", "fake*")
    assert result.stdout.splitlines()[1].split()[:5] == ["fake_tokens", "extractor", "index", "50", "Hz"]
    assert "2x4096" in result.stdout
    reset_registry(None)
    result = invoke("plugins", "list", "fake*")
    assert table_names(result.stdout) == [] and "(no plugin matches)" in result.stdout


# ----------------------------------------------------------------------------- plugins show
def test_plugins_show_mel():
    result = invoke("plugins", "show", "mel")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith(f"mel (extractor) from minecli {minecli.__version__}")
    assert "stream (defaults): float, dim 80, 100 Hz, audio at 16000 Hz" in out
    assert "n_mels (int, default 80): number of mel bands" in out
    assert "sample_rate (int, default 16000)" in out
    assert "hop_length (int | null, default None)" in out
    assert "window ('hann' | 'hamming' | 'blackman' | 'rect', default 'hann')" in out


def test_plugins_show_json():
    result = invoke("plugins", "show", "mel", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["name"] == "mel" and doc["kind"] == "extractor"
    assert doc["spec"]["frame_rate"] == 100.0 and doc["spec"]["dim"] == 80
    params = {p["name"]: p["default"] for p in doc["params"]}
    assert params["n_mels"] == 80 and params["n_fft"] == 512 and params["log_floor"] == pytest.approx(1e-5)


def test_plugins_show_estimator_and_head():
    out = invoke("plugins", "show", "mine").stdout
    assert "lower bound: yes" in out and "ema_decay (float, default 0.99)" in out
    out = invoke("plugins", "show", "embedding").stdout
    assert "embedding (head)" in out and "dim (int, default 64)" in out


def test_plugins_show_unknown_name_is_one_line_and_exit_1():
    result = invoke("plugins", "show", "mell")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "Did you mean 'mel'?" in lines[0]
    assert "minecli plugins list" in lines[0]


# ----------------------------------------------------------------------------- import cost
_PROBE = textwrap.dedent("""
    import json, sys
    from minecli.cli import main
    try:
        main({argv!r})
        code = 0
    except SystemExit as exc:
        code = exc.code
    loaded = [m for m in {libraries!r} if m in sys.modules]
    print("PROBE " + json.dumps({{"code": code, "loaded": loaded}}))
""")


@pytest.mark.parametrize("argv", [["plugins", "list"], ["plugins", "list", "--json"], ["plugins", "show", "mel"],
                                  ["--help"]], ids=" ".join)
def test_listing_imports_no_model_library(argv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINECLI_")}
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv, libraries=MODEL_LIBRARIES)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout.rsplit("PROBE ", 1)[1])
    assert probe["code"] == 0, proc.stderr
    assert probe["loaded"] == [], f"{' '.join(argv)} imported {probe['loaded']}"
    if argv[:2] == ["plugins", "list"]:
        assert "mel" in proc.stdout


def test_python_dash_m_minecli_is_the_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minecli", "extract", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: minecli extract" in proc.stdout and "--shard I/N" in proc.stdout
