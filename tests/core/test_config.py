"""The run configuration: parsing, every problem in one error, overrides, seed key names, the resolved doc."""
from __future__ import annotations

import pytest
import yaml

from minecli.core.config import RunConfig, SECTIONS, apply_overrides, load_config, resolved_document
from minecli.core.errors import ConfigError, MinecliError
from minecli.core.registry import get_extractor_class, get_registry


pytestmark = pytest.mark.usefixtures("installed_plugins")


@pytest.fixture
def base(run_doc):
    return run_doc()


def write_yaml(path, doc):
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def load(tmp_path, doc, overrides=()):
    return load_config(write_yaml(tmp_path / "cfg.yaml", doc), list(overrides))


def problems_of(tmp_path, doc, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, doc, overrides)
    return info.value.problems


# ----------------------------------------------------------------------------- a good config
def test_a_valid_config_parses_into_typed_sections(tmp_path, base):
    cfg, doc, notes = load(tmp_path, base)
    assert isinstance(cfg, RunConfig)
    assert cfg.x.extractor == "mel" and cfg.x.params == {"n_mels": 8, "n_fft": 256}
    assert cfg.critic.hidden_dims == [16]
    assert cfg.training.steps == 20
    assert notes == []
    assert list(doc) == list(SECTIONS)
    # defaults are filled in the resolved document
    assert doc["pairing"]["normalization"] == "auto"
    assert doc["training"]["seed"] == 0


def test_numbers_in_scientific_notation_are_numbers(tmp_path, base):
    # PyYAML reads 1e-4 (no dot) as a string; the schema turns it into a float.
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4", "premise: PyYAML reads 1e-4 as a string"
    del base["training"]["lr"]
    path = write_yaml(tmp_path / "sci.yaml", base)
    path.write_text(path.read_text().replace("training:\n", "training:\n  lr: 1e-4\n  grad_clip: 5e1\n")
                    .replace("n_mels: 8\n", "n_mels: 8\n    log_floor: 1e-6\n"))
    text = path.read_text()
    assert "lr: 1e-4" in text and "log_floor: 1e-6" in text
    cfg, resolved, _ = load_config(path)
    assert isinstance(cfg.training.lr, float) and cfg.training.lr == pytest.approx(1e-4)
    assert isinstance(cfg.training.grad_clip, float) and cfg.training.grad_clip == pytest.approx(50.0)
    assert resolved["training"]["lr"] == pytest.approx(1e-4)
    params = get_extractor_class("mel").parse(cfg.x.params)
    assert isinstance(params.log_floor, float) and params.log_floor == pytest.approx(1e-6)


# ----------------------------------------------------------------------------- errors
def test_unknown_key_suggests_the_closest(tmp_path, base):
    base["training"]["stepz"] = 5
    (problem,) = problems_of(tmp_path, base)
    assert "training.stepz" in problem and "Did you mean 'steps'?" in problem


def test_unknown_key_without_a_close_match_lists_the_valid_keys(tmp_path, base):
    base["data"]["zzzzzz"] = 1
    (problem,) = problems_of(tmp_path, base)
    assert "data.zzzzzz" in problem and "Valid keys:" in problem and "cache_dir" in problem


def test_unknown_section_suggests_the_closest(tmp_path, base):
    base["trainig"] = {"steps": 5}
    (problem,) = problems_of(tmp_path, base)
    assert "unknown section 'trainig'" in problem and "Did you mean 'training'?" in problem


def test_every_problem_is_reported_in_one_error(tmp_path, base):
    base["training"]["stepz"] = 5                      # unknown key
    base["critic"]["hidden_dims"] = "abc"              # bad type
    base["pairing"] = {"normalization": "standad"}     # bad choice
    base["x"]["extractor"] = "mell"                    # unknown plugin (checked against the registry)
    base["estimator"]["name"] = "mien"                 # unknown estimator
    base["data"]["test"] = str(tmp_path / "nope.txt")  # missing filelist
    base["loging"] = {}                                # unknown section
    with pytest.raises(ConfigError) as info:
        load(tmp_path, base)
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) == 7, problems
    assert text.startswith(str(tmp_path / "cfg.yaml")) and "7 problems" in text
    for needle in ("training.stepz", "critic.hidden_dims", "'standad'. Did you mean 'standard'?",
                   "Unknown extractor 'mell'. Did you mean 'mel'?", "Unknown estimator 'mien'. Did you mean 'mine'?",
                   "data.test: filelist not found", "unknown section 'loging'"):
        assert sum(needle in p for p in problems) == 1, (needle, problems)


@pytest.mark.parametrize("section, key, value, expect", [
    ("training", "steps", "many", "training.steps must be"),
    ("training", "batch_size", 2.5, "training.batch_size must be"),
    ("training", "progress", "perhaps", "training.progress must be true or false"),
    ("training", "precision", "fp16", "training.precision must be one of 'auto', 'float32', 'bf16'"),
    ("training", "threads", "many", "training.threads must be"),
    ("training", "threads", 0, "training.threads must be a positive number of threads or auto"),
    ("training", "prefetch", "sometimes", "training.prefetch must be"),
    ("critic", "hidden_dims", ["a", 8], "critic.hidden_dims[0] must be an integer"),
    ("output", "save_every", [1], "output.save_every must be"),
    ("pairing", "x_repeat", "twice", "pairing.x_repeat must be"),
])
def test_bad_types_name_the_key(tmp_path, base, section, key, value, expect):
    base.setdefault(section, {})[key] = value
    problems = problems_of(tmp_path, base)
    assert any(expect in p for p in problems), problems


def test_cross_field_value_errors(tmp_path, base):
    base["pairing"] = {"x_repeat": 2}
    base["training"]["lr"] = -1
    problems = problems_of(tmp_path, base)
    assert any("set both x_repeat and y_repeat" in p for p in problems)
    assert any("lr must be positive" in p for p in problems)


def test_a_training_segment_length_that_the_run_would_ignore(tmp_path, base):
    # the run crops pairing.segment_length frames; a different training.segment_length is a mistake
    base["training"]["segment_length"] = 8
    (problem,) = problems_of(tmp_path, base)
    assert "set pairing.segment_length=8" in problem
    base["pairing"] = {"segment_length": 8}
    cfg, _, _ = load(tmp_path, base)
    assert cfg.pairing.segment_length == 8


def test_unknown_extractor_suggests_the_closest(tmp_path, base):
    names = get_registry().names("extractor")
    wrong, right = ("encdec", "encodec") if "encodec" in names else ("complex_spek", "complex_spec")
    base["y"]["extractor"] = wrong
    (problem,) = problems_of(tmp_path, base)
    assert problem.startswith("y.extractor:")
    assert f"Did you mean '{right}'?" in problem and "minecli plugins list" in problem


def test_extractor_params_are_checked_with_did_you_mean(tmp_path, base):
    base["x"]["params"]["n_melz"] = 4
    base["y"]["params"]["frame_rate"] = 33  # 16000 / 33 is not a whole hop
    problems = problems_of(tmp_path, base)
    assert any("x.params.n_melz" in p and "Did you mean 'n_mels'?" in p for p in problems)
    assert any(p.startswith("y.params:") and "hop" in p for p in problems)


def test_a_head_that_does_not_accept_the_stream_kind(tmp_path, base):
    base["x"]["head"] = {"name": "embedding"}  # mel is a float stream
    (problem,) = problems_of(tmp_path, base)
    assert problem.startswith("x.head.name:") and "does not accept float streams" in problem
    assert "'projection'" in problem


def test_head_params_are_checked(tmp_path, base):
    base["y"]["head"] = {"name": "projection", "params": {"dimm": 8}}
    (problem,) = problems_of(tmp_path, base)
    assert "y.head.params.dimm" in problem and "Did you mean 'dim'?" in problem


def test_missing_stream_section(tmp_path, base):
    del base["y"]
    problems = problems_of(tmp_path, base)
    assert any("missing required key 'y'" in p for p in problems)


def test_filelists_and_csvs_together_are_an_error(tmp_path, base):
    base["data"]["train_csv"] = str(tmp_path / "train.csv")
    problems = problems_of(tmp_path, base)
    assert any("not both" in p for p in problems)


def test_file_level_errors(tmp_path):
    with pytest.raises(MinecliError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("x:\n  extractor: mel\n  params: {n_mels: 8\n")
    with pytest.raises(MinecliError, match=r"invalid YAML at line \d+"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(MinecliError, match="must be a mapping of sections"):
        load_config(listy)


# ----------------------------------------------------------------------------- overrides
def test_overrides_scalars_nested_and_lists(tmp_path, base):
    cfg, doc, _ = load(tmp_path, base, ["training.steps=5", "x.params.n_mels=4", "critic.hidden_dims=[32,32]",
                                        "training.lr=1e-4", "pairing.max_length_diff=2", "output.resume=false"])
    assert cfg.training.steps == 5
    assert cfg.x.params["n_mels"] == 4
    assert cfg.critic.hidden_dims == [32, 32]
    assert isinstance(cfg.training.lr, float) and cfg.training.lr == pytest.approx(1e-4)
    assert cfg.pairing.max_length_diff == 2  # the section did not exist in the file
    assert cfg.output.resume is False
    assert doc["critic"]["hidden_dims"] == [32, 32]


def test_override_values_may_contain_equals_signs(base):
    out = apply_overrides(base, ["output.dir=/tmp/a=b", "x.head.name=projection"])
    assert out["output"]["dir"] == "/tmp/a=b"
    assert out["x"]["head"] == {"name": "projection"}
    assert "head" not in base["x"], "the input document is left unchanged"


def test_override_replaces_a_scalar_with_a_section():
    assert apply_overrides({"training": 3}, ["training.steps=4"]) == {"training": {"steps": 4}}


@pytest.mark.parametrize("bad", ["training.steps", "=5", "..=5"])
def test_malformed_overrides(bad):
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, [bad, "also-bad"])
    assert len(info.value.problems) == 2
    assert repr(bad) in info.value.problems[0]


def test_an_override_with_a_bad_value_is_reported_like_a_file_error(tmp_path, base):
    problems = problems_of(tmp_path, base, ["training.steps=lots", "critic.hidden_dimz=[8]"])
    assert any("training.steps must be" in p for p in problems)
    assert any("critic.hidden_dimz" in p and "Did you mean 'hidden_dims'?" in p for p in problems)


# ----------------------------------------------------------------------------- seed compatibility
def test_the_original_pipelines_key_names_are_read(tmp_path, base):
    base["data"].update({"segment_length": 300, "normalization": "robust", "x_repeat": 4, "y_repeat": 1,
                         "max_length_diff": 7, "context_frame_numbers": 3})
    del base["output"]["dir"]
    base["validation"] = {"validate_every_n_steps": 25, "early_stopping_patience": 4}
    del base["training"]["validate_every"]
    base["training"]["num_workers"] = 16
    base["checkpoint"] = {"dir": str(tmp_path / "exp" / "checkpoints")}
    base["logging"] = {"log_interval": 5}
    cfg, doc, notes = load(tmp_path, base)
    p = cfg.pairing
    assert (p.segment_length, p.normalization, p.x_repeat, p.y_repeat, p.max_length_diff, p.context_frames) == \
        (300, "robust", 4, 1, 7, 3)
    assert cfg.training.validate_every == 25 and cfg.training.early_stopping_patience == 4
    assert cfg.output.dir == str(tmp_path / "exp")
    assert "validation" not in doc and "checkpoint" not in doc and "logging" not in doc
    assert any("num_workers" in n for n in notes) and any("pairing" in n for n in notes)


def test_the_original_model_section_maps_onto_streams_heads_and_critic(tmp_path, base):
    doc = {k: v for k, v in base.items() if k not in ("x", "y", "critic", "estimator")}
    doc["data"] = {"segment_length": 300, "x_repeat": 4, "y_repeat": 1}
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.csv").write_text("id,x_feature,y_feature\n")
        doc["data"][f"{split}_csv"] = str(tmp_path / f"{split}.csv")
    doc["model"] = {"x_type": "index", "y_type": "float", "x_dim": 256, "y_dim": 2050, "x_vocab_size": 6561,
                    "x_embedding_dim": 256, "y_proj_dim": 32, "hidden_dims": [64], "activation": "relu",
                    "batch_norm": False, "dropout": 0.5, "bias_correction_method": "none"}
    cfg, resolved, notes = load(tmp_path, doc)
    assert cfg.x.extractor == cfg.y.extractor == "precomputed"
    assert cfg.x.params["kind"] == "index" and cfg.x.params["vocab_size"] == 6561
    assert cfg.x.params["frame_rate"] == 25.0  # repeated x4 onto the 100 Hz grid
    assert cfg.x.head.name == "embedding" and cfg.x.head.params == {"dim": 256}
    assert cfg.y.params["dim"] == 2050 and cfg.y.head.params == {"dim": 32}
    assert cfg.critic.hidden_dims == [64] and cfg.critic.dropout == 0.5
    assert cfg.estimator.name == "dv"  # the original's 'none' is the plain DV gradient
    assert any("model section" in n for n in notes)


def test_unknown_keys_in_the_original_model_section_are_named(tmp_path, base):
    base["model"] = {"x_type": "index", "x_vocab_sise": 10}
    with pytest.raises(ConfigError, match="model.x_vocab_sise.*Did you mean 'x_vocab_size'"):
        load(tmp_path, base)


# ----------------------------------------------------------------------------- the resolved document
def test_the_resolved_document_reloads_to_the_same_config(tmp_path, base):
    cfg, doc, _ = load(tmp_path, base, ["training.steps=7"])
    again_path = write_yaml(tmp_path / "resolved.yaml", doc)
    cfg2, doc2, notes2 = load_config(again_path)
    assert cfg2 == cfg and doc2 == doc and notes2 == []
    assert resolved_document(cfg) == doc


@pytest.mark.parametrize("key, value, words", [
    ("extraction.device", "gpu", "extraction.device 'gpu' is not a device; use auto, cpu, cuda or cuda:N"),
    ("extraction.batch_size", "0", "extraction.batch_size must be at least 1"),
    ("extraction.max_batch_seconds", "0", "extraction.max_batch_seconds must be positive"),
])
def test_bad_extraction_settings_are_named(tmp_path, base, key, value, words):
    assert any(words in p for p in problems_of(tmp_path, base, [f"{key}={value}"]))
