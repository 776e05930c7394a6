"""Every shipped config parses: its only complaints may be data files that exist on a user's machine."""
from __future__ import annotations

from pathlib import Path

import pytest

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
