import re
from pathlib import Path

import pytest
import yaml

from tunelab.config import apply_override, load_config, parse_config
from tunelab.errors import ConfigError

BASE = {"data": {"train": "train.csv"}}


def test_defaults_fill_every_section() -> None:
    config = parse_config(BASE)
    assert config.model.name == "minilm-l6"
    assert config.method.name == "full"
    assert config.training.group_by_length is True
    assert config.training.lr is None  # the method's default applies


def test_unknown_key_suggests_the_closest_valid_key() -> None:
    with pytest.raises(ConfigError, match=r"training\.lrr.*did you mean 'lr'"):
        parse_config({**BASE, "training": {"lrr": 1e-4}})


@pytest.mark.parametrize(("section", "key", "ours"), [
    ("training", "learning_rate", "lr"), ("training", "num_train_epochs", "epochs"),
    ("training", "per_device_train_batch_size", "batch_size"),
    ("data", "max_seq_length", "max_length"), ("data", "validation_file", "dev")])
def test_hugging_face_names_point_to_tunelabs(section: str, key: str, ours: str) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}'.*did you mean '{ours}'"):
        parse_config({**BASE, section: {**BASE.get(section, {}), key: 1}})
    lora = {"name": "lora", "lora_alpha": 32}
    with pytest.raises(ConfigError, match=r"method\.lora_alpha'.*did you mean 'alpha'"):
        parse_config({**BASE, "method": lora})


def test_unknown_top_level_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'trainig'.*did you mean 'training'"):
        parse_config({**BASE, "trainig": {}})


def test_method_options_are_checked_against_the_method() -> None:
    config = parse_config({**BASE, "method": {"name": "lora", "r": 4}})
    assert config.method.options.r == 4
    with pytest.raises(ConfigError, match=r"method\.rr.*did you mean 'r'"):
        parse_config({**BASE, "method": {"name": "lora", "rr": 4}})
    with pytest.raises(ConfigError, match=r"unknown method 'lorra'.*did you mean 'lora'"):
        parse_config({**BASE, "method": "lorra"})


def test_bad_value_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"training\.lr: .*'fast'"):
        parse_config({**BASE, "training": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"training\.batch_size"):
        parse_config({**BASE, "training": {"batch_size": 0}})


def test_a_micro_batch_that_does_not_split_the_batch_evenly_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"training\.micro_batch_size: does not divide "
                       r"batch_size 32; use one of 1, 2, 4, 8, 16, 32 \(got 12\)"):
        parse_config({**BASE, "training": {"micro_batch_size": 12}})
    with pytest.raises(ConfigError, match=r"batch_size 12; use one of 1, 2, 3, 4, 6, 12"):
        parse_config({**BASE, "training": {"batch_size": 12, "micro_batch_size": 8}})
    assert parse_config({**BASE, "training": {"micro_batch_size": 4}}).training \
        .micro_batch_size == 4


def test_overrides_parse_values_as_yaml() -> None:
    raw = {**BASE, "method": "full"}
    for assignment in ("training.lr=3e-5", "training.epochs=2", "method.name=lora",
                       "method.r=16", "task.multi_label=true"):
        apply_override(raw, assignment)
    config = parse_config(raw)
    assert config.training.lr == pytest.approx(3e-5)
    assert config.training.epochs == 2
    assert config.method.name == "lora" and config.method.options.r == 16
    assert config.task.multi_label is True


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, "training.lr")


def test_init_template_is_a_valid_config(tmp_path: Path) -> None:
    from importlib.resources import files

    raw = yaml.safe_load(files("tunelab").joinpath("templates/config.yaml").read_text("utf-8"))
    config = parse_config(raw)
    assert config.data.train == Path("data/train.csv")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = parse_config({**BASE, "method": {"name": "lora", "r": 4}})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    again = load_config(path)
    assert again == config
    assert yaml.safe_load(path.read_text())["method"]["alpha"] == 16  # defaults are written out


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train: a.csv\n  dev: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+"):
        load_config(path)


def test_task_options_belong_to_the_task_and_errors_name_them() -> None:
    with pytest.raises(ConfigError, match=r"task\.threshold: Input should be less than 1"):
        parse_config({**BASE, "task": {"threshold": 1.5}})
    with pytest.raises(ConfigError, match=r"unknown key 'task\.multi_label'"):  # NER has none
        parse_config({**BASE, "task": {"type": "token-classification", "multi_label": True}})
    config = parse_config({**BASE, "task": "token-classification"})
    assert config.task.type == "token-classification" and config.task.option_values() == {
        "labels": None}


def test_a_saved_runs_config_drops_task_keys_an_older_version_wrote(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**BASE, "task": {"type": "token-classification",
                                                     "multi_label": False, "threshold": 0.5}}))
    with pytest.raises(ConfigError, match="multi_label"):
        load_config(path)  # a user's config: the key is an error
    assert load_config(path, saved=True).task.type == "token-classification"


def test_a_config_that_is_not_a_mapping_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- a\n- b\n")
    for saved in (False, True):
        with pytest.raises(ConfigError, match="expected a mapping of sections"):
            load_config(path, saved=saved)


def test_a_bad_value_from_set_names_the_flag_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  train: a.csv\ntraining:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"^--set training\.lr=abc: training\.lr: .*learning "
                                          r"rate.*after --set$"):
        load_config(path, ["training.epochs=2", "training.lr=abc"])
    with pytest.raises(ConfigError, match=r"^--set method\.r=0: method\.r: .*greater"):
        load_config(path, ["training.epochs=2", "method=lora", "method.r=0"])
    with pytest.raises(ConfigError, match=r"^--set training\.num_train_epochs=2: unknown key.*"
                                          r"did you mean 'epochs'"):
        load_config(path, ["training.num_train_epochs=2"])
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: training\.epochs: .*"
                                          r"in the config$"):
        load_config(path, ["training.lr=1e-4"])  # the file's own mistake names the file
