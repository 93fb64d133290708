"""Find personal data with presidio and replace each value with a numbered placeholder.

The analyzer runs on presidio's NoOpNlpEngine, one of its engines that load no spaCy model
(the default engine downloads one and fails offline); every recogniser used here is
self-contained: regular expressions with check digits, phonenumbers, and a tunelab NER run
for names. The same value gets the same placeholder within a text, so the model still sees
that two mentions are one; with `link_rows`, within a whole `Masker.session()` (a file).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tunelab.privacy.options import PLACEHOLDERS, TYPES, MaskOptions

LANGUAGE = "en"  # presidio's routing key only: every recogniser here reads any language
PHONE_REGIONS = ("US", "UK", "GB", "DE", "FR", "IN", "CA", "AU", "CN", "HK", "SG")


def _offline_domains() -> None:
    """presidio's email check asks tldextract for the public suffix list, which it fetches
    over the network; use the snapshot bundled with tldextract instead."""
    import tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(),
                                                                cache_dir=None)


def build_analyzer(options: MaskOptions) -> tuple[Any, Any]:
    """presidio's AnalyzerEngine with only the recognisers `options.types` need, and the
    names recogniser (None without one)."""
    import regex
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
    )

    from tunelab.privacy import recognizers as cn

    _offline_domains()
    made = {"EMAIL_ADDRESS": EmailRecognizer, "CREDIT_CARD": CreditCardRecognizer,
            "IBAN_CODE": IbanRecognizer, "IP_ADDRESS": IpRecognizer,
            "PHONE_NUMBER": lambda: cn.ContextPhoneRecognizer(supported_regions=PHONE_REGIONS),
            "CN_MOBILE": cn.CnMobileRecognizer, "CN_BANK_CARD": cn.CnBankCardRecognizer,
            "CN_RESIDENT_ID": cn.CnResidentIdRecognizer,
            "URL_CREDENTIALS": cn.CredentialUrlRecognizer}
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    names = None
    for kind in options.types:
        for entity in TYPES[kind]:
            if entity == "PERSON":
                from tunelab.privacy.names import RunNameRecognizer

                names = RunNameRecognizer(options.names_run)  # type: ignore[arg-type]
                registry.add_recognizer(names)
                continue
            recognizer = made[entity]()
            if hasattr(recognizer, "global_regex_flags"):
                # \b with Unicode rules sees no boundary between 号 and 1 in 手机号13812345678;
                # presidio matches with the `regex` module, whose flag values are its own
                recognizer.global_regex_flags = (regex.DOTALL | regex.MULTILINE
                                                 | regex.IGNORECASE | regex.ASCII)
            registry.add_recognizer(recognizer)
    engine = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "none"}])
    return AnalyzerEngine(registry=registry, nlp_engine=engine,
                          supported_languages=[LANGUAGE]), names


class Numbering:
    """Value -> placeholder (<PHONE_1>, <PHONE_2>, ...), one counter per placeholder;
    `neutral`: one counter for all (<PII_1>, <PII_2>, ...), so no placeholder brings a word
    such as "card" into texts whose label may turn on it."""

    def __init__(self, neutral: bool = False) -> None:
        self.neutral = neutral
        self.seen: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}

    @staticmethod
    def key(value: str) -> str:
        compact = re.sub(r"[\s().-]", "", value)
        return compact.lower()

    def placeholder(self, kind: str, value: str) -> str:
        name = "PII" if self.neutral else PLACEHOLDERS[kind]
        key = (name, self.key(value))
        if key not in self.seen:
            self.counts[name] = self.counts.get(name, 0) + 1
            self.seen[key] = f"<{name}_{self.counts[name]}>"
        return self.seen[key]


class Masker:
    """`mask(texts)` masks a list of texts; `find(text)` lists the personal data in a text
    as (type, start, end, score). `made` counts the values replaced, by type."""

    def __init__(self, options: MaskOptions | None = None) -> None:
        from tunelab.privacy.loading import import_presidio

        import_presidio()
        from presidio_anonymizer import AnonymizerEngine

        self.options = options or MaskOptions()
        self.analyzer, self.names = build_analyzer(self.options)
        self.anonymizer = AnonymizerEngine()
        self.kind_of = {entity: kind for kind in self.options.types for entity in TYPES[kind]}
        self.numbering = Numbering(self.options.placeholders == "neutral")
        self.made: Counter[str] = Counter()

    @contextmanager
    def session(self) -> Iterator[Masker]:
        """Everything masked inside counts together, and with `link_rows` shares one
        numbering: a file, a batch of feedback."""
        outer = self.numbering, self.made
        self.numbering, self.made = Numbering(self.numbering.neutral), Counter()
        try:
            yield self
        finally:
            self.numbering, self.made = outer

    def _next_text(self) -> Numbering:
        if not self.options.link_rows:
            self.numbering = Numbering(self.numbering.neutral)
        return self.numbering

    def analyze(self, text: str) -> list[Any]:
        if not text.strip():
            return []
        return self.analyzer.analyze(text, language=LANGUAGE, entities=list(self.kind_of),
                                     score_threshold=self.options.min_score)

    def resolved(self, text: str) -> list[Any]:
        """The spans that survive the anonymizer's own overlap rule (the higher score wins),
        in reading order: what `mask` replaces."""
        kept = self.anonymizer._remove_conflicts_and_get_text_manipulation_data(
            self.analyze(text), "merge_similar_or_contained")
        return sorted(kept, key=lambda r: r.start)

    def find(self, text: str) -> list[tuple[str, int, int, float]]:
        return sorted((self.kind_of[r.entity_type], r.start, r.end, r.score)
                      for r in self.resolved(text))

    def mask(self, texts: Sequence[str]) -> list[str]:
        from presidio_anonymizer.entities import OperatorConfig

        if self.names is not None:
            self.names.prepare(texts)
        operators = {entity: OperatorConfig("custom", {
            "lambda": lambda value, kind=kind: self.numbering.placeholder(kind, value)})
            for entity, kind in self.kind_of.items()}
        out = []
        for text in texts:
            numbering, found = self._next_text(), self.resolved(text)
            for r in found:  # <X_1> is the first one read; a span lost to an overlap gets none
                kind = self.kind_of[r.entity_type]
                numbering.placeholder(kind, text[r.start:r.end])
                self.made[kind] += 1
            out.append(self.anonymizer.anonymize(text, found, operators).text if found else text)
        return out

    def mask_tokens(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """Pre-tokenised sentences: a token that a found span covers becomes the span's
        placeholder, so the sentence keeps its length and its tags still line up."""
        from tunelab.tasks.alignment import offsets_of_tokens

        joined = [offsets_of_tokens(list(tokens)) for tokens in sentences]
        if self.names is not None:
            self.names.prepare([text for text, _ in joined])
        out = []
        for (text, offsets), tokens in zip(joined, sentences, strict=True):
            masked, numbering = list(tokens), self._next_text()
            for kind, start, end, _ in self.find(text) if text.strip() else []:
                value = numbering.placeholder(kind, text[start:end])
                self.made[kind] += 1
                for i, (first, last) in enumerate(offsets):
                    if first < end and last > start:
                        masked[i] = value
            out.append(masked)
        return out
