"""Consoles and library quieting shared by the command-line modules."""

from __future__ import annotations

import os
import warnings

from rich.console import Console

err = Console(stderr=True)
out = Console()


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from datasets.utils.logging import disable_progress_bar as quiet_datasets
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    quiet_datasets()  # "Saving the dataset" bars of the token cache
    logging.set_verbosity_error()
    disable_progress_bars()  # weight loading/saving bars; the Trainer keeps its own
    logging.disable_progress_bar()
    # peft reads a property transformers has deprecated: nothing a user can act on
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
