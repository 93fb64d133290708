"""The service's masking of what it keeps: logged texts and stored feedback. The monitoring
window keeps only labels and confidences, never texts, so it has nothing to mask."""

from __future__ import annotations

import threading
from typing import Any


class ServiceMasker:
    """Loaded on first use (presidio takes seconds to import), then shared; each text is
    numbered on its own, as training data is, so feedback retrains on the same forms."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.lock = threading.Lock()

    def masker(self) -> Any:
        from tunelab.privacy.examples import masker_for
        from tunelab.privacy.options import MaskOptions

        return masker_for(MaskOptions().model_dump_json())

    def mask_inputs(self, inputs: list[Any]) -> list[Any]:
        if not self.enabled:
            return inputs
        with self.lock:
            masker = self.masker()
            with masker.session():
                if all(isinstance(item, str) for item in inputs):
                    return masker.mask(inputs)
                return [masker.mask(list(item)) for item in inputs]  # text pairs
