"""Person names found by a tunelab token-classification run, as a presidio recogniser."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

from tunelab.errors import ConfigError

NAME_TYPES = {"PER", "PERSON", "NAME", "PERSON_NAME"}  # CoNLL-2003, OntoNotes, Resume NER


class RunNameRecognizer(EntityRecognizer):
    """PERSON spans from the run's entities whose type is a person type. `prepare(texts)`
    tags many texts in batches first; `analyze` then reads them back."""

    def __init__(self, run: Path, supported_language: str = "en") -> None:
        from tunelab.predictor import Predictor

        try:
            self.predictor = Predictor(run, spinning=False)
        except Exception as error:  # a missing or broken run: say which setting names it
            raise ConfigError(f"names_run: {error}") from None
        if self.predictor.task.name != "token-classification":
            raise ConfigError(f"names_run: {run} is a "
                              f"{self.predictor.task.name} run; give a token-classification "
                              "run that tags person names (trained on CoNLL-2003 or Resume NER)")
        entity_types = self.predictor.task.entity_types
        if not set(entity_types) & NAME_TYPES:
            raise ConfigError(f"names_run: {run} tags {', '.join(entity_types)}"
                              f"; none is a person type ({', '.join(sorted(NAME_TYPES))})")
        self.found: dict[str, list[tuple[int, int, float]]] = {}
        super().__init__(supported_entities=["PERSON"], name="tunelab-names",
                         supported_language=supported_language)

    def load(self) -> None:
        return None

    def prepare(self, texts: Sequence[str], batch_size: int = 64) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.found and t.strip()))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            for text, predicted in zip(chunk, self.predictor.predict(chunk, batch_size),
                                       strict=True):
                self.found[text] = [(e["start"], e["end"], e["score"])
                                    for e in predicted["entities"] if e["type"] in NAME_TYPES]

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None
                ) -> list[RecognizerResult]:
        if "PERSON" not in entities or not text.strip():
            return []
        if text not in self.found:
            self.prepare([text])
        return [RecognizerResult("PERSON", start, end, score)
                for start, end, score in self.found[text]]
