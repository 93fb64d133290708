"""Keep a training process's resident memory near what it uses.

glibc keeps the memory that freed tensors held, for reuse, and returns little of it to the
system: the frozen-encoder probe's forward passes, or the dev evaluation's larger batches,
leave the process that much bigger for the rest of the run (bench/RESULTS.md, "Where training
memory goes"). `malloc_trim` gives the free pages back. It runs at the start of training and
around each evaluation and checkpoint, never per step: trimming every step would make each
step fault its pages in again, which is what makes a low `MALLOC_MMAP_THRESHOLD_` slow.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any

from transformers import TrainerCallback


@cache
def _trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to give back
        return None


def release_memory() -> None:
    """Microseconds to a few milliseconds; no gc.collect(), which takes about 0.2 s with the
    libraries loaded, and tensors are freed as their last reference goes anyway."""
    if (trim := _trim()) is not None:
        trim(0)


class ReleaseMemory(TrainerCallback):
    """Free pages back to the system at the start of training, before each evaluation
    (the step that triggers it) and after each evaluation and checkpoint."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        release_memory()

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if control.should_evaluate or control.should_save:
            release_memory()

    def on_evaluate(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        release_memory()

    def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        release_memory()
