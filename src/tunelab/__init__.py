"""tunelab: fine-tune pretrained language models, evaluate, compress and serve them,
offline and fast on a CPU."""

from tunelab.errors import ConfigError, DataError, ModelError, TunelabError

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "DataError",
    "ModelError",
    "TunelabError",
    "__version__",
    "evaluate",
    "load",
    "load_config",
    "train",
]


def __getattr__(name: str):  # heavy imports (torch, transformers) only when used
    if name in {"train", "evaluate", "load"}:
        from tunelab import api

        return getattr(api, name)
    if name == "load_config":
        from tunelab.config import load_config

        return load_config
    raise AttributeError(name)
