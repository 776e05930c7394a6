"""StreamSpec validation and typed parameters parsed from YAML/command-line values."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import pytest

from minecli import NoParams, StreamSpec, param
from minecli.core.errors import ConfigError
from minecli.core.params import coerce, describe_params, params_to_dict, parse_params


# ----------------------------------------------------------------------------- StreamSpec
def test_float_and_index_specs():
    mel = StreamSpec("float", 100, dim=80, sample_rate=16000)
    assert mel.width == 80
    assert mel.log_vocab_nats is None
    codes = StreamSpec("index", 75, vocab_size=1024, n_codebooks=8, sample_rate=24000)
    assert codes.width == 8
    assert codes.log_vocab_nats == pytest.approx(8 * math.log(1024))


@pytest.mark.parametrize("spec, text", [
    (StreamSpec("float", 100, dim=80), "float 80-d @ 100 Hz"),
    (StreamSpec("float", 12.5, dim=512), "float 512-d @ 12.5 Hz"),
    (StreamSpec("index", 75, vocab_size=1024, n_codebooks=8), "index 8x1024 @ 75 Hz"),
    (StreamSpec("index", 50, vocab_size=4096), "index 4096 @ 50 Hz"),
])
def test_describe(spec, text):
    assert spec.describe() == text


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "int", "frame_rate": 50, "dim": 4}, "kind must be 'float' or 'index'"),
    ({"kind": "float", "frame_rate": 50}, "needs a positive integer dim"),
    ({"kind": "float", "frame_rate": 50, "dim": 0}, "needs a positive integer dim"),
    ({"kind": "float", "frame_rate": 50, "dim": 2.5}, "needs a positive integer dim"),
    ({"kind": "index", "frame_rate": 50}, "vocab_size > 1"),
    ({"kind": "index", "frame_rate": 50, "vocab_size": 1}, "vocab_size > 1"),
    ({"kind": "index", "frame_rate": 50, "vocab_size": 16, "n_codebooks": 0}, "n_codebooks"),
    ({"kind": "float", "frame_rate": 0, "dim": 4}, "frame_rate"),
    ({"kind": "float", "frame_rate": -75, "dim": 4}, "frame_rate"),
    ({"kind": "float", "frame_rate": float("nan"), "dim": 4}, "frame_rate"),
    ({"kind": "float", "frame_rate": float("inf"), "dim": 4}, "frame_rate"),
    ({"kind": "float", "frame_rate": "100", "dim": 4}, "frame_rate"),
    ({"kind": "float", "frame_rate": 100, "dim": 4, "sample_rate": 0}, "sample_rate"),
    ({"kind": "float", "frame_rate": 100, "dim": 4, "sample_rate": 16000.0}, "sample_rate"),
])
def test_invalid_specs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamSpec(**kwargs)


def test_spec_is_frozen_and_round_trips_through_a_dict():
    spec = StreamSpec("index", 75, vocab_size=1024, n_codebooks=8, sample_rate=24000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.dim = 3  # type: ignore[misc]
    data = spec.to_dict()
    assert data["kind"] == "index" and data["vocab_size"] == 1024 and data["n_codebooks"] == 8
    assert StreamSpec.from_dict(data) == spec
    assert StreamSpec.from_dict(data) != StreamSpec("index", 75, vocab_size=1024, n_codebooks=4, sample_rate=24000)


# ----------------------------------------------------------------------------- params
@dataclass(frozen=True)
class TrainParams:
    lr: float = param(1e-3, help="learning rate")
    steps: int = param(100, help="training steps")
    combine: Literal["concat", "sum"] = param("concat", help="how to join codebooks")
    hidden: list[int] = param([], help="hidden layer sizes")
    names: list[str] = param([], help="names")
    bandwidth: float | None = param(None, help="kbps; null keeps the model default")
    shuffle: bool = param(True, help="shuffle")


@dataclass(frozen=True)
class Required:
    path: str = param(help="where the features are")
    rate: float = param(50.0)


@dataclass(frozen=True)
class Checked:
    decay: float = param(0.99)

    def __post_init__(self) -> None:
        if not 0 <= self.decay < 1:
            raise ValueError(f"decay must be in [0, 1), not {self.decay}")


@dataclass(frozen=True)
class Outer:
    inner: TrainParams = param(default_factory=TrainParams)
    seed: int = param(0)


def test_defaults():
    p = parse_params(TrainParams, {}, "training")
    assert p == TrainParams()
    assert parse_params(TrainParams, None, "training") == TrainParams()
    # mutable defaults are copied, never shared between instances
    assert TrainParams().hidden == [] and TrainParams().hidden is not TrainParams().hidden


def test_numbers_in_strings_are_coerced():
    p = parse_params(TrainParams, {"lr": "1e-4", "steps": "2000"}, "training")
    assert isinstance(p.lr, float) and p.lr == pytest.approx(1e-4)
    assert isinstance(p.steps, int) and p.steps == 2000
    assert parse_params(TrainParams, {"steps": 3.0}, "t").steps == 3
    assert parse_params(TrainParams, {"steps": "1e3"}, "t").steps == 1000
    assert parse_params(TrainParams, {"lr": 1}, "t").lr == 1.0


@pytest.mark.parametrize("data, match", [
    ({"steps": "2.5"}, "training.steps must be an integer, not '2.5'"),
    ({"steps": True}, "training.steps must be an integer"),
    ({"steps": "many"}, "training.steps must be an integer"),
    ({"lr": "fast"}, "training.lr must be a number, not 'fast'"),
    ({"lr": True}, "training.lr must be a number"),
    ({"shuffle": "maybe"}, "training.shuffle must be true or false"),
    ({"names": {"a": 1}}, "training.names must be list of str"),
    ({"bandwidth": "wide"}, "training.bandwidth must be float | null"),
])
def test_bad_values_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        parse_params(TrainParams, data, "training")


def test_unknown_key_gets_did_you_mean():
    with pytest.raises(ConfigError) as info:
        parse_params(TrainParams, {"stpes": 10}, "training")
    assert str(info.value) == "unknown key 'training.stpes'. Did you mean 'steps'?"
    assert info.value.problems == ["unknown key 'training.stpes'. Did you mean 'steps'?"]


def test_unknown_key_without_a_close_match_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        parse_params(TrainParams, {"zzz": 10}, "training")
    msg = str(info.value)
    assert "unknown key 'training.zzz'" in msg and "Did you mean" not in msg
    assert "Valid keys: lr, steps, combine, hidden, names, bandwidth, shuffle." in msg


def test_unknown_key_at_the_top_level_has_no_leading_dot():
    with pytest.raises(ConfigError) as info:
        parse_params(TrainParams, {"stpes": 10}, "")
    assert info.value.problems == ["unknown key 'stpes'. Did you mean 'steps'?"]


def test_all_problems_are_reported_together():
    data = {"lrr": 0.1, "steps": "many", "combine": "concatenate", "shuffle": "sometimes"}
    with pytest.raises(ConfigError) as info:
        parse_params(TrainParams, data, "training")
    problems = info.value.problems
    assert len(problems) == 4
    assert any("unknown key 'training.lrr'. Did you mean 'lr'?" in p for p in problems)
    assert any(p.startswith("training.steps must be an integer") for p in problems)
    assert any(p.startswith("training.combine must be one of") for p in problems)
    assert any(p.startswith("training.shuffle must be true or false") for p in problems)
    assert str(info.value).startswith("4 problems:\n  - ")


def test_problems_can_be_collected_instead_of_raised():
    problems: list[str] = []
    assert parse_params(TrainParams, {"lrr": 1}, "a", problems) == TrainParams()
    assert parse_params(Required, {}, "b", problems) is None
    assert problems == ["unknown key 'a.lrr'. Did you mean 'lr'?", "missing required key 'b.path'"]


def test_literal_choices():
    assert parse_params(TrainParams, {"combine": "sum"}, "x").combine == "sum"
    with pytest.raises(ConfigError) as info:
        parse_params(TrainParams, {"combine": "sums"}, "x.head")
    msg = str(info.value)
    assert "x.head.combine must be one of 'concat', 'sum', not 'sums'" in msg
    assert "Did you mean 'sum'?" in msg


def test_literal_of_numbers_accepts_their_text():
    assert coerce("6", Literal[1.5, 3, 6], "bandwidth") == 6
    assert coerce(1.5, Literal[1.5, 3, 6], "bandwidth") == 1.5
    with pytest.raises(ValueError, match="must be one of 1.5, 3, 6"):
        coerce("12", Literal[1.5, 3, 6], "bandwidth")


@pytest.mark.parametrize("value, expected", [
    ("a,b", ["a", "b"]),
    (" a , b ,", ["a", "b"]),
    ("[a, b]", ["a", "b"]),
    ("", []),
    ("[]", []),
    (["x"], ["x"]),
    (("x", "y"), ["x", "y"]),
])
def test_list_of_str_from_text(value, expected):
    assert parse_params(TrainParams, {"names": value}, "t").names == expected


def test_list_items_are_coerced():
    assert parse_params(TrainParams, {"hidden": "256,128"}, "t").hidden == [256, 128]
    assert parse_params(TrainParams, {"hidden": 64}, "t").hidden == [64]
    with pytest.raises(ConfigError, match=r"t\.hidden\[1\] must be an integer, not 'wide'"):
        parse_params(TrainParams, {"hidden": "64,wide"}, "t")


@pytest.mark.parametrize("value, expected", [
    (None, None), ("null", None), ("None", None), ("~", None), ("6", 6.0), (1.5, 1.5),
])
def test_optional_values(value, expected):
    assert parse_params(TrainParams, {"bandwidth": value}, "t").bandwidth == expected


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("Yes", True), ("on", True), ("1", True), (1, True),
    ("false", False), ("no", False), ("OFF", False), ("0", False), (0, False), (False, False),
])
def test_booleans(value, expected):
    assert parse_params(TrainParams, {"shuffle": value}, "t").shuffle is expected


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key 'x.params.path'"):
        parse_params(Required, {"rate": 25}, "x.params")
    assert parse_params(Required, {"path": "feats/"}, "x.params") == Required("feats/", 50.0)


def test_post_init_errors_become_config_errors():
    with pytest.raises(ConfigError, match=r"estimator: decay must be in \[0, 1\), not 1.5"):
        parse_params(Checked, {"decay": "1.5"}, "estimator")


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="training must be a mapping of keys to values, not 5"):
        parse_params(TrainParams, 5, "training")


def test_nested_dataclasses_report_full_paths():
    p = parse_params(Outer, {"inner": {"lr": "1e-2"}, "seed": "3"}, "cfg")
    assert p.inner.lr == pytest.approx(1e-2) and p.seed == 3
    with pytest.raises(ConfigError) as info:
        parse_params(Outer, {"inner": {"stesp": 1, "lr": "x"}}, "cfg")
    assert len(info.value.problems) == 2
    assert "unknown key 'cfg.inner.stesp'. Did you mean 'steps'?" in info.value.problems


def test_no_params_rejects_any_key():
    assert parse_params(NoParams, {}, "estimator") == NoParams()
    with pytest.raises(ConfigError, match="unknown key 'estimator.lr'"):
        parse_params(NoParams, {"lr": 1}, "estimator")


def test_describe_params():
    rows = {r["name"]: r for r in describe_params(TrainParams)}
    assert list(rows) == ["lr", "steps", "combine", "hidden", "names", "bandwidth", "shuffle"]
    assert rows["lr"] == {"name": "lr", "type": "float", "default": 1e-3, "help": "learning rate"}
    assert rows["combine"]["type"] == "'concat' | 'sum'"
    assert rows["hidden"]["type"] == "list of int" and rows["hidden"]["default"] == []
    assert rows["bandwidth"]["type"] == "float | null"
    assert describe_params(Required)[0]["default"] == "(required)"


def test_params_to_dict():
    p = parse_params(TrainParams, {"hidden": "8,4"}, "t")
    assert params_to_dict(p)["hidden"] == [8, 4]
    assert params_to_dict(None) == {}
    assert params_to_dict({"a": 1}) == {"a": 1}
