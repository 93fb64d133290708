"""Consoles and library quieting shared by the command-line modules."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from rich.console import Console

# Piped or captured output has no width to fit: rich would assume 80 columns and cut run
# names and dates in tables, so off a terminal lines may be as long as they need.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)


def bars_shown() -> bool:
    """Progress bars only on a terminal: in CI or under nohup their carriage returns pile up
    into one unreadable line (long work logs lines instead, training/progress.py)."""
    return sys.stderr.isatty()


class TerminalHandler(logging.Handler):
    """tunelab's own warnings on the terminal, as `warning: ...` like the run's others."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        err.print(f"[yellow]{record.levelname.lower()}:[/yellow] {escape(record.getMessage())}",
                  highlight=False)


def quiet_libraries() -> None:
    ours = logging.getLogger("tunelab")
    if not any(isinstance(handler, TerminalHandler) for handler in ours.handlers):
        ours.addHandler(TerminalHandler(logging.WARNING))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # "Saving the dataset" bars of the token cache. Importing datasets here to silence it
    # would bring pandas and pyarrow into every command, serving an exported model included
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules:
        from datasets.utils.logging import disable_progress_bar as quiet_datasets

        quiet_datasets()
    # Weight loading/saving bars (the Trainer keeps its own) and transformers' notices. They
    # are set before transformers is imported where possible, as it reads them at import:
    # importing it here would cost an exported model's commands half a second.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "huggingface_hub" in sys.modules:  # it has read the variable already
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    # peft reads a property transformers has deprecated: nothing a user can act on
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
