import dataclasses
from pathlib import Path

import pytest
import yaml

from cube.config import ConfigError
from harness.config import Params, load_params, params_from_dict

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = (ROOT / "params.yaml").read_text(encoding="utf-8")


def load_edited(tmp_path: Path, old: str, new: str) -> Params:
    assert old in DEFAULT, f"test edit target {old!r} not in params.yaml"
    path = tmp_path / "params.yaml"
    path.write_text(DEFAULT.replace(old, new, 1), encoding="utf-8")
    return load_params(path)


def test_default_params_load_and_match_the_dataclass_defaults_where_given():
    params = load_params(ROOT / "params.yaml")
    assert params.cube.lattice == (8, 8, 6)
    assert params.teacher.models[0].name == "all-MiniLM-L6-v2"
    assert params.train.advanced.infonce_weight == 1.0 and params.train.advanced.curriculum is False
    assert len(params.params_hash()) == 64


def settings_of(section: object, prefix: str = "") -> set[str]:
    """Every setting's dotted key in a section of the schema (a list of sections, such as the teachers, is one; a
    mapping's keys are each one)."""
    keys = set()
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if dataclasses.is_dataclass(value):
            keys |= settings_of(value, f"{prefix}{field.name}.")
        elif isinstance(value, dict):
            keys |= {f"{prefix}{field.name}.{key}" for key in value}
        else:
            keys.add(prefix + field.name)
    return keys


def keys_in(mapping: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in mapping.items():
        keys |= keys_in(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


def test_params_yaml_shows_every_setting_at_the_schemas_default():
    """Defaults live in one place, the schema (cube/config.py, harness/config.py); params.yaml shows each of them."""
    shown = load_params(ROOT / "params.yaml")
    defaults = params_from_dict({})
    assert shown == defaults, [key for key in sorted(settings_of(defaults))
                               if eval("shown." + key) != eval("defaults." + key)]  # noqa: S307 (our own keys)
    assert settings_of(defaults) == keys_in(yaml.safe_load(DEFAULT))


def test_params_hash_changes_with_any_value(tmp_path):
    base = load_params(ROOT / "params.yaml")
    changed = load_edited(tmp_path, "steps: 10", "steps: 11")
    assert base.params_hash() != changed.params_hash()


def test_unknown_key_names_file_section_key_and_nearest_valid_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_edited(tmp_path, "    autocast: none\n  optimized", "    min_similarity_threshold: 0.3\n  optimized")
    message = str(err.value)
    assert "params.yaml" in message
    assert "unknown key 'min_similarity_threshold' in train.dialogue" in message
    assert "did you mean 'semantic_similarity_threshold'?" in message


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("steps: 10", "steps: ten", ["cube.steps", "'ten'", "whole number"]),
        ("hidden: 32", "hidden: 0", ["cube.hidden", "0", "allowed range is (0, inf)"]),
        ("lattice: [8, 8, 6]", "lattice: [8, -8, 6]", ["cube.lattice[1]", "-8", "allowed range"]),
        ("lattice: [8, 8, 6]", "lattice: [8, 8]", ["cube.lattice", "3 entries"]),
        ("boundary: walls ", "boundary: wall ", ["cube.boundary", "'wall'", "did you mean 'walls'"]),
        ("residual: true", "residual: 1", ["cube.residual", "true or false"]),
        ("val_fraction: 0.1", "val_fraction: 0.7", ["data.val_fraction", "0.7", "(0.0, 0.5]"]),
        ("    recall@1: 0.03", "    recal@1: 0.03", ["gate.quality_drops", "'recal@1'", "did you mean 'recall@1'?"]),
        ("    recall@1: 0.03", "    recall@5: 0.03", ["gate.quality_drops", "'recall@5'", "not a per-pair measure"]),
    ],
)
def test_wrong_type_or_range_names_key_value_and_allowed(tmp_path, old, new, words):
    with pytest.raises(ConfigError) as err:
        load_edited(tmp_path, old, new)
    for word in words:
        assert word in str(err.value)


def test_misspelt_section_is_an_error_not_a_default(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'cubes' in the top level; did you mean 'cube'"):
        load_edited(tmp_path, "\ncube:\n", "\ncubes:\n")


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    with pytest.raises(ConfigError, match=r"YAML syntax error at line \d+, column \d+"):
        load_edited(tmp_path, "seed: 0", "seed: [0")


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        load_params(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_conflicting_options_are_refused():
    with pytest.raises(ConfigError, match="data.path is empty"):
        params_from_dict({"data": {"corpus": "file"}})
    with pytest.raises(ConfigError, match="every loss weight at 0"):
        params_from_dict({"train": {"dialogue": {"cosine_weight": 0}}})


def test_teacher_list_entries_are_checked_too():
    with pytest.raises(ConfigError, match=r"unknown key 'pool' in teacher.models\[0\]; did you mean 'pooling'"):
        params_from_dict({"teacher": {"models": [{"name": "x", "pool": "mean"}]}})


def test_no_extra_seeds_is_allowed_and_means_one_seed(tmp_path):
    params = load_edited(tmp_path, "extra_seeds: [1, 2, 3, 4]", "extra_seeds: []")
    assert params.quality.extra_seeds == ()


def test_check_refuses_a_lattice_that_cannot_hold_the_teacher_s_width_before_anything_is_written(
        tmp_path, monkeypatch, capsys):
    from harness.__main__ import main

    root = Path(__file__).resolve().parent.parent
    text = (root / "params.yaml").read_text(encoding="utf-8")
    assert "  lattice: [8, 8, 6]" in text
    (tmp_path / "params.yaml").write_text(text.replace("  lattice: [8, 8, 6]", "  lattice: [8, 8, 5]"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["--params", "params.yaml", "check"]) == 2
    assert "384-d embedding does not fit lattice 8x8x5" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_tool_named_after_the_global_options_gets_a_message_not_a_traceback(capsys):
    from harness.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--params", "params.yaml", "compare"])
    assert exited.value.code == 2 and "compare takes its own options" in capsys.readouterr().err
