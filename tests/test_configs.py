"""Every shipped config parses: its only complaints may be data files that exist on a user's machine."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from minecli.core.config import load_config
from minecli.core.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid_apart_from_data_paths(path, monkeypatch):
    monkeypatch.chdir(path.parents[1])
    try:
        cfg, doc, _ = load_config(path)
    except ConfigError as exc:
        others = [p for p in exc.problems if "not found" not in p]
        assert not others, others
        return
    assert doc["x"]["extractor"] and doc["y"]["extractor"]


def test_demo_config_points_at_shipped_audio(monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cfg, _, _ = load_config(root / "configs" / "demo.yaml")
    for split in ("train", "valid", "test"):
        listed = (root / getattr(cfg.data, split)).read_text().split()
        assert listed and all((root / "configs" / "demo" / name).exists() for name in listed)


def _leaves(doc: dict, prefix: tuple = ()):
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _default_of(path: tuple, doc: dict):
    """The code's default for one key of a run config: RunConfig fields, or the named plugin's Params."""
    import dataclasses

    from minecli.core.config import RunConfig
    from minecli.core.registry import get_estimator_class, get_extractor_class, get_head_class

    if len(path) >= 3 and path[0] in ("x", "y") and path[1] == "params":
        cls, rest = get_extractor_class(doc[path[0]]["extractor"]).Params, path[2:]
    elif len(path) >= 4 and path[0] in ("x", "y") and path[1:3] == ("head", "params"):
        cls, rest = get_head_class(doc[path[0]]["head"]["name"]).Params, path[3:]
    elif len(path) >= 3 and path[:2] == ("estimator", "params"):
        cls, rest = get_estimator_class(doc["estimator"]["name"]).Params, path[2:]
    else:
        cls, rest = RunConfig, path
    from minecli.core.params import fields_of

    obj = None
    for key in rest:
        field, tp = {f.name: (f, t) for f, t in fields_of(cls)}[key]
        if field.default is not dataclasses.MISSING:
            obj = field.default
            cls = type(obj)
        elif field.default_factory is not dataclasses.MISSING:
            obj = field.default_factory()
            cls = type(obj)
        else:  # a required section such as x: descend into its type
            obj, cls = None, tp
    return obj


def test_pair_yaml_shows_the_code_defaults():
    """configs/pair.yaml says its values are the defaults: every value not marked otherwise must be one."""
    root = Path(__file__).resolve().parents[1]
    path = root / "configs" / "pair.yaml"
    text = path.read_text()
    doc = yaml.safe_load(text)
    # Lines whose comment says "(not the default" are examples of a choice; the data paths and the two
    # extractor names have no default.
    marked = {line.split(":", 1)[0].strip() for line in text.splitlines() if "(not the default" in line}
    marked.discard("#")
    required = {("data", s) for s in ("train", "valid", "test")} | {("x", "extractor"), ("y", "extractor")}
    checked, wrong = 0, []
    for key, value in _leaves(doc):
        if key in required or key[-1] in marked:
            continue
        default = _default_of(key, doc)
        if key[1:] == ("head", "name") and default is None:  # null picks the head from the stream's kind
            from minecli.core.registry import get_extractor_class

            ext = get_extractor_class(doc[key[0]]["extractor"])
            default = "embedding" if ext(ext.Params()).spec().kind == "index" else "projection"
        if isinstance(default, (list, tuple)):
            default = list(default)
        if isinstance(default, float) and isinstance(value, str):
            value = float(value)  # YAML reads 1e-3 as a string
        checked += 1
        if value != default:
            wrong.append(f"{'.'.join(key)}: {value!r} in pair.yaml, {default!r} in the code")
    assert not wrong, wrong
    assert checked >= 25  # the file lists most keys; a parse that skipped them would pass vacuously
