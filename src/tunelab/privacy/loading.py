"""Import presidio without torch.

presidio-analyzer imports spaCy, whose thinc imports torch when it is installed, and its
Hugging Face recogniser modules import torch and transformers' pipelines; it also probes CUDA
through torch unless PRESIDIO_DEVICE is set. tunelab uses none of that (NoOpNlpEngine,
regular expressions), and a service that serves an exported model runs without torch:
importing it here would cost 1.5 s and 250 MB.

While presidio imports (about 3 s, once per process), torch cannot be imported from another
thread of the same process. Nothing in tunelab does that: a PyTorch model is loaded, and
torch imported, before a service warms its masker, and training masks its data in the main
thread before it builds a model.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def _unimportable(*names: str) -> Iterator[None]:
    """`import name` raises ImportError inside, as if the package were not installed."""
    added = [name for name in names if name not in sys.modules]
    for name in added:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in added:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def import_presidio() -> None:
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    if "presidio_analyzer" in sys.modules:
        return
    # Kept out while presidio imports: transformers (when not loaded already, for a PyTorch
    # model) reads once, at its first import, whether torch is installed, and would then
    # believe it is not; and the serving of an exported model does not need it at all.
    with _unimportable("torch", "transformers", "transformers.pipelines"):
        import presidio_analyzer  # noqa: F401
        import presidio_anonymizer  # noqa: F401
