"""The plugin registry: registration, lookup, isolation of broken plugins, entry-point discovery."""
from __future__ import annotations

import itertools
import sys
import types
from pathlib import Path

import pytest

import minecli
from minecli import Estimator, Extractor, Head, StreamSpec, hookimpl
from minecli.core import registry
from minecli.core.errors import ConfigError, PluginError
from minecli.core.registry import Registry, Source, build_registry, get_registry, reset_registry

BUILTIN_EXTRACTORS = {"complex_spec", "mel"}
BUILTIN_HEADS = {"embedding", "projection"}
BUILTIN_ESTIMATORS = {"mine"}
_ids = itertools.count()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No plugin switch from the caller's shell leaks into a test."""
    for var in (registry.ENV_DISABLE_AUTOLOAD, registry.ENV_TRACE, registry.ENV_STRICT, registry.ENV_DISABLE):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def use_registry():
    """Install a registry as the process-wide one for one test, and always drop it afterwards."""

    def _use(reg: Registry) -> Registry:
        reset_registry(reg)
        return reg

    yield _use
    reset_registry(None)


# ----------------------------------------------------------------------------- fakes
class FakeExtractor(Extractor):
    """A tiny extractor used only by the tests."""

    name = "fake_ext"
    summary = "fake extractor for tests"

    def spec(self) -> StreamSpec:
        return StreamSpec("float", 50.0, dim=3)

    def __call__(self, wave, sample_rate, path=None):  # pragma: no cover - never called
        raise NotImplementedError


class OtherFakeExtractor(FakeExtractor):
    name = "other_fake_ext"


class FakeHead(Head):
    name = "fake_head"

    def build(self, spec, context, params):  # pragma: no cover - never called
        raise NotImplementedError


class FakeEstimator(Estimator):
    name = "fake_est"

    def loss(self, t_joint, t_marg):  # pragma: no cover - never called
        raise NotImplementedError

    def bound(self, t_joint, t_marg):  # pragma: no cover - never called
        raise NotImplementedError


def fake_plugin(name: str, **hooks) -> types.ModuleType:
    """A module object carrying the given functions (decorate them with hookimpl yourself)."""
    module = types.ModuleType(name)
    for attr, fn in hooks.items():
        setattr(module, attr, fn)
    return module


def extractors_plugin(name: str, *classes: type) -> types.ModuleType:
    @hookimpl
    def register_extractors(register):
        for cls in classes:
            register(cls)

    return fake_plugin(name, register_extractors=register_extractors)


def make_dist(root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write an installed-looking distribution (``dist-info`` with entry points) plus module files."""
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    return root


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Create fake distributions on sys.path; their modules get unique names and are unloaded afterwards."""
    created: list[str] = []

    def _make(dist: str, version: str, plugins: dict[str, str]) -> dict[str, str]:
        """plugins: entry-point name -> module source. Returns entry-point name -> module name."""
        names = {ep: f"_minecli_test_{dist}_{ep}_{next(_ids)}" for ep in plugins}
        site = make_dist(tmp_path / f"site{next(_ids)}", dist, version, names,
                         {names[ep]: src for ep, src in plugins.items()})
        monkeypatch.syspath_prepend(str(site))
        created.extend(names.values())
        return names

    yield _make
    for module in created:
        sys.modules.pop(module, None)


GOOD_PLUGIN = '''
from minecli import Extractor, StreamSpec, hookimpl


class Fake(Extractor):
    """A fake extractor shipped by a third-party distribution."""

    name = "{name}"

    def spec(self):
        return StreamSpec("float", 50.0, dim=3)

    def __call__(self, wave, sample_rate, path=None):
        raise NotImplementedError


@hookimpl
def register_extractors(register):
    register(Fake)
'''


# ----------------------------------------------------------------------------- register and lookup
def test_builtins_are_registered_through_entry_points():
    reg = build_registry()
    assert BUILTIN_EXTRACTORS <= set(reg.names("extractor"))
    assert BUILTIN_HEADS <= set(reg.names("head"))
    assert BUILTIN_ESTIMATORS <= set(reg.names("estimator"))
    mel = reg.get("extractor", "mel")
    assert mel.source.package == "minecli"
    assert mel.source.version == minecli.__version__
    assert mel.source.plugin == "spectrogram"
    assert reg.failures == []
    assert "spectrogram" in reg.plugins and "register_extractors" in reg.hooks_by_plugin["spectrogram"]


def test_register_and_lookup_each_kind():
    reg = Registry()
    src = Source("tests", "tests", "0")
    reg.register("extractor", FakeExtractor, src)
    reg.register("head", FakeHead, src)
    reg.register("estimator", FakeEstimator, src)
    assert reg.get("extractor", "fake_ext").obj is FakeExtractor
    assert reg.get("head", "fake_head").obj is FakeHead
    assert reg.get("estimator", "fake_est").obj is FakeEstimator
    assert reg.get("extractor", "fake_ext").summary == "fake extractor for tests"
    assert reg.names("extractor") == ["fake_ext"]
    # Registering the very same class again is harmless.
    reg.register("extractor", FakeExtractor, src)
    assert reg.names("extractor") == ["fake_ext"]


def test_names_are_per_kind():
    reg = Registry()
    src = Source("tests", "tests", "0")
    reg.register("extractor", FakeExtractor, src)
    with pytest.raises(PluginError, match="Unknown head 'fake_ext'"):
        reg.get("head", "fake_ext")


def test_unknown_name_suggests_the_closest_and_points_to_the_listing():
    reg = build_registry()
    with pytest.raises(PluginError) as info:
        reg.get("extractor", "mell")
    msg = str(info.value)
    assert "Unknown extractor 'mell'" in msg
    assert "Did you mean 'mel'" in msg
    assert "minecli plugins list" in msg


def test_unknown_name_without_a_close_match_has_no_suggestion():
    reg = build_registry()
    with pytest.raises(PluginError) as info:
        reg.get("estimator", "zzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "minecli plugins list --kind estimator" in str(info.value)


def test_unknown_name_mentions_plugins_that_failed_to_load():
    @hookimpl
    def register_extractors(register):
        raise RuntimeError("boom")

    reg = build_registry([("broken_codec", fake_plugin("broken_codec", register_extractors=register_extractors))],
                         autoload=False)
    with pytest.raises(PluginError, match="failed to load: broken_codec"):
        reg.get("extractor", "codec")


def test_list_filters_by_pattern_and_kind():
    reg = build_registry()
    assert [e.name for e in reg.list("me*")] == ["mel"]
    assert [e.name for e in reg.list("*spec")] == ["complex_spec"]
    estimators = reg.list(kind="estimator")
    assert {e.kind for e in estimators} == {"estimator"}
    assert "mine" in [e.name for e in estimators] and "mel" not in [e.name for e in estimators]
    everything = reg.list()
    kinds = [e.kind for e in everything]
    # sorted by kind (extractor, head, estimator), then by name
    assert kinds == sorted(kinds, key=registry.KINDS.index)
    names = [e.name for e in everything if e.kind == "head"]
    assert names == sorted(names)
    assert reg.list("no_such_thing*") == []


def test_register_rejects_malformed_items():
    reg = Registry()
    src = Source("bad", "badpkg", "1.0")
    with pytest.raises(PluginError, match=r"not a subclass of minecli\.Extractor"):
        reg.register("extractor", FakeHead, src)
    with pytest.raises(PluginError, match="not a subclass"):
        reg.register("extractor", FakeExtractor(), src)  # an instance, not a class

    class BadName(FakeExtractor):
        name = "Bad Name"

    with pytest.raises(PluginError, match="invalid name 'Bad Name'"):
        reg.register("extractor", BadName, src)

    class Abstract(Extractor):
        name = "abstract"

    with pytest.raises(PluginError, match="without implementing: __call__, spec"):
        reg.register("extractor", Abstract, src)
    assert reg.names("extractor") == []


# ----------------------------------------------------------------------------- duplicates
def test_duplicate_name_is_an_error_naming_both_sources():
    reg = Registry()

    class Clash(FakeExtractor):
        name = "fake_ext"

    reg.register("extractor", FakeExtractor, Source("first", "pkg-one", "1.0"))
    with pytest.raises(PluginError) as info:
        reg.register("extractor", Clash, Source("second", "pkg-two", "2.0"))
    msg = str(info.value)
    assert "'fake_ext'" in msg
    assert "plugin 'first' (pkg-one 1.0)" in msg
    assert "plugin 'second' (pkg-two 2.0)" in msg
    assert reg.get("extractor", "fake_ext").obj is FakeExtractor


def test_duplicate_between_two_plugins_keeps_the_first_and_reports_the_second(capsys):
    class Clash(FakeExtractor):
        name = "fake_ext"

    reg = build_registry([("first", extractors_plugin("first", FakeExtractor)),
                          ("second", extractors_plugin("second", Clash))], autoload=False)
    assert reg.get("extractor", "fake_ext").obj is FakeExtractor
    assert [f.plugin for f in reg.failures] == ["second"]
    reason = reg.failures[0].reason
    assert "plugin 'first'" in reason and "plugin 'second'" in reason
    assert "plugin 'second'" in capsys.readouterr().err


def test_a_plugin_cannot_shadow_a_builtin_name():
    class FakeMel(FakeExtractor):
        name = "mel"

    reg = build_registry([("shadow", extractors_plugin("shadow", FakeMel))], autoload=False)
    assert reg.get("extractor", "mel").source.package == "minecli"
    assert reg.get("extractor", "mel").obj is not FakeMel
    assert [f.plugin for f in reg.failures] == ["shadow"]
    assert "plugin 'spectrogram' (minecli" in reg.failures[0].reason


def test_duplicate_is_fatal_in_strict_mode(monkeypatch):
    monkeypatch.setenv(registry.ENV_STRICT, "1")

    class Clash(FakeExtractor):
        name = "fake_ext"

    with pytest.raises(PluginError, match="plugin 'second'.*failed to load"):
        build_registry([("first", extractors_plugin("first", FakeExtractor)),
                        ("second", extractors_plugin("second", Clash))], autoload=False)


# ----------------------------------------------------------------------------- broken plugins are isolated
def _raising_plugin():
    @hookimpl
    def register_extractors(register):
        raise RuntimeError("model zoo unreachable")

    return fake_plugin("raiser", register_extractors=register_extractors)


def _non_extractor_plugin():
    @hookimpl
    def register_extractors(register):
        register(FakeHead)

    return fake_plugin("wrongtype", register_extractors=register_extractors)


def _misspelled_plugin():
    @hookimpl
    def register_extractor(register):  # the hook is register_extractors
        register(OtherFakeExtractor)

    return fake_plugin("misspelled", register_extractor=register_extractor)


def _no_hook_plugin():
    def register_extractors(register):  # forgot @hookimpl
        register(OtherFakeExtractor)

    return fake_plugin("nohook", register_extractors=register_extractors)


@pytest.mark.parametrize("make, plugin, reason", [
    (_raising_plugin, "raiser", "RuntimeError: model zoo unreachable"),
    (_non_extractor_plugin, "wrongtype", "not a subclass of minecli.Extractor"),
    (_misspelled_plugin, "misspelled", "unknown hook 'register_extractor'. Did you mean 'register_extractors'?"),
    (_no_hook_plugin, "nohook", "implements no minecli hook"),
])
def test_broken_plugin_is_reported_by_name_and_skipped(make, plugin, reason, capsys):
    reg = build_registry([(plugin, make()), ("good", extractors_plugin("good", FakeExtractor))], autoload=False)
    err = capsys.readouterr().err
    assert f"plugin '{plugin}'" in err and "skipped" in err
    assert reason in err
    assert [(f.plugin, reason in f.reason) for f in reg.failures] == [(plugin, True)]
    # everything else still loads: the built-ins and the other fake plugin
    assert reg.get("extractor", "fake_ext").obj is FakeExtractor
    assert BUILTIN_EXTRACTORS <= set(reg.names("extractor"))
    assert BUILTIN_HEADS <= set(reg.names("head"))
    assert "fake_head" not in reg.names("extractor")
    assert "other_fake_ext" not in reg.names("extractor")
    assert plugin not in reg.plugins


@pytest.mark.parametrize("make, plugin", [(_raising_plugin, "raiser"), (_non_extractor_plugin, "wrongtype"),
                                          (_misspelled_plugin, "misspelled")])
def test_strict_mode_turns_a_failure_into_an_error(make, plugin, monkeypatch):
    monkeypatch.setenv(registry.ENV_STRICT, "1")
    with pytest.raises(PluginError, match=f"plugin '{plugin}'.*failed to load"):
        build_registry([(plugin, make())], autoload=False)


def test_a_plugin_that_fails_halfway_registers_nothing():
    @hookimpl
    def register_extractors(register):
        register(OtherFakeExtractor)
        register(FakeHead)  # wrong kind: the whole plugin is rejected

    @hookimpl
    def register_estimators(register):
        register(FakeEstimator)

    module = fake_plugin("half", register_extractors=register_extractors, register_estimators=register_estimators)
    reg = build_registry([("half", module)], autoload=False)
    assert "other_fake_ext" not in reg.names("extractor")
    assert "fake_est" not in reg.names("estimator")
    assert [f.plugin for f in reg.failures] == ["half"]


def test_a_plugin_may_register_several_kinds_and_items():
    @hookimpl
    def register_extractors(register):
        register(FakeExtractor)
        register(OtherFakeExtractor)

    @hookimpl
    def register_heads(register):
        register(FakeHead)

    @hookimpl
    def register_estimators(register):
        register(FakeEstimator)

    module = fake_plugin("multi", register_extractors=register_extractors, register_heads=register_heads,
                         register_estimators=register_estimators)
    reg = build_registry([("multi", module)], autoload=False)
    assert {"fake_ext", "other_fake_ext"} <= set(reg.names("extractor"))
    assert reg.get("head", "fake_head").source.plugin == "multi"
    assert reg.get("estimator", "fake_est").source.plugin == "multi"
    assert sorted(reg.hooks_by_plugin["multi"]) == ["register_estimators", "register_extractors", "register_heads"]


def test_disable_plugins_by_name(monkeypatch):
    monkeypatch.setenv(registry.ENV_DISABLE, "good, spectrogram")
    reg = build_registry([("good", extractors_plugin("good", FakeExtractor))])
    assert "fake_ext" not in reg.names("extractor")
    assert "mel" not in reg.names("extractor")
    assert BUILTIN_HEADS <= set(reg.names("head"))
    assert reg.failures == []


def test_trace_reports_each_loaded_plugin(monkeypatch, capsys):
    monkeypatch.setenv(registry.ENV_TRACE, "1")
    build_registry([("good", extractors_plugin("good", FakeExtractor))], autoload=False)
    err = capsys.readouterr().err
    assert "minecli: trace: loaded plugin 'good'" in err
    assert "minecli: trace: loaded plugin 'spectrogram' (minecli" in err


# ----------------------------------------------------------------------------- entry-point discovery
def test_fake_distribution_is_discovered(fake_dist):
    fake_dist("fakeplug", "0.1", {"fakeplug": GOOD_PLUGIN.format(name="fake_dist_ext")})
    reg = build_registry()
    entry = reg.get("extractor", "fake_dist_ext")
    assert entry.source == Source("fakeplug", "fakeplug", "0.1")
    assert entry.obj(entry.obj.Params()).spec().frame_rate == 50.0
    listed = [(e.name, e.source.package, e.source.version) for e in reg.list(kind="extractor")]
    assert ("fake_dist_ext", "fakeplug", "0.1") in listed
    assert BUILTIN_EXTRACTORS <= set(reg.names("extractor"))
    assert reg.failures == []


def test_disable_autoload_skips_third_party_but_keeps_builtins(fake_dist, monkeypatch):
    fake_dist("fakeplug", "0.1", {"fakeplug": GOOD_PLUGIN.format(name="fake_dist_ext")})
    monkeypatch.setenv(registry.ENV_DISABLE_AUTOLOAD, "1")
    reg = build_registry()
    assert "fake_dist_ext" not in reg.names("extractor")
    assert BUILTIN_EXTRACTORS <= set(reg.names("extractor"))
    assert BUILTIN_HEADS <= set(reg.names("head"))
    assert BUILTIN_ESTIMATORS <= set(reg.names("estimator"))
    # an explicit argument wins over the environment
    assert "fake_dist_ext" in build_registry(autoload=True).names("extractor")


def test_distribution_whose_module_fails_to_import_is_skipped(fake_dist, capsys):
    fake_dist("brokenplug", "2.3", {"brokenplug": "import a_module_that_is_not_installed_anywhere\n",
                                    "fine": GOOD_PLUGIN.format(name="fine_ext")})
    reg = build_registry()
    err = capsys.readouterr().err
    assert "plugin 'brokenplug' (brokenplug) was skipped" in err
    assert "ModuleNotFoundError" in err and "a_module_that_is_not_installed_anywhere" in err
    assert [(f.plugin, f.package) for f in reg.failures] == [("brokenplug", "brokenplug")]
    assert reg.get("extractor", "fine_ext").source.package == "brokenplug"
    assert BUILTIN_EXTRACTORS <= set(reg.names("extractor"))


def test_distribution_import_error_is_fatal_in_strict_mode(fake_dist, monkeypatch):
    fake_dist("brokenplug", "2.3", {"brokenplug": "raise ImportError('needs libfoo')\n"})
    monkeypatch.setenv(registry.ENV_STRICT, "1")
    expected = r"plugin 'brokenplug' \(brokenplug\) failed to load: ImportError: needs libfoo"
    with pytest.raises(PluginError, match=expected):
        build_registry()


def test_third_party_plugin_named_like_a_builtin_does_not_replace_it(fake_dist):
    fake_dist("fakeplug", "0.1", {"heads": GOOD_PLUGIN.format(name="fake_dist_ext")})
    reg = build_registry()
    assert BUILTIN_HEADS <= set(reg.names("head"))
    assert reg.get("head", "embedding").source.package == "minecli"
    assert "fake_dist_ext" not in reg.names("extractor")
    assert [(f.plugin, f.package) for f in reg.failures] == [("heads", "fakeplug")]
    assert "minecli" in reg.failures[0].reason and "fakeplug 0.1" in reg.failures[0].reason


# ----------------------------------------------------------------------------- the process-wide registry
def test_process_wide_registry_is_built_once_and_can_be_replaced(use_registry):
    reset_registry(None)
    first = get_registry()
    assert get_registry() is first
    fake = use_registry(build_registry([("good", extractors_plugin("good", FakeExtractor))], autoload=False))
    assert get_registry() is fake
    assert registry.get_extractor_class("fake_ext") is FakeExtractor
    assert registry.get_plugin_manager() is fake.pm
    reset_registry(None)
    assert get_registry() is not fake
    with pytest.raises(PluginError, match="Unknown extractor 'fake_ext'"):
        registry.get_extractor_class("fake_ext")


def test_make_extractor_parses_params(use_registry):
    use_registry(build_registry(autoload=False))
    ext = registry.make_extractor("mel", {"n_mels": "40", "frame_rate": "50"})
    assert ext.params.n_mels == 40
    assert ext.spec() == StreamSpec("float", 50.0, dim=40, sample_rate=16000)
    with pytest.raises(ConfigError, match="unknown key 'x.params.n_mel'. Did you mean 'n_mels'"):
        registry.make_extractor("mel", {"n_mel": 40}, where="x.params")
    with pytest.raises(PluginError, match="Did you mean 'mel'"):
        minecli.make_extractor("mell")


def test_lookup_helpers_for_heads_and_estimators(use_registry):
    use_registry(build_registry(autoload=False))
    assert registry.get_head_class("embedding").accepts == ("index",)
    assert registry.get_estimator_class("mine").lower_bound is True
    est = registry.make_estimator("mine", {"ema_decay": "0.9"})
    assert est.params.ema_decay == pytest.approx(0.9)
    with pytest.raises(ConfigError, match="ema_decay"):
        registry.make_estimator("mine", {"ema_decay": 1.5})
