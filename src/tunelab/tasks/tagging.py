"""Tag schemes. Everything is converted to IOB2 (B-X starts an entity, I-X continues it),
which is what the model learns and seqeval scores in strict mode."""

from __future__ import annotations

from collections.abc import Sequence

SCHEMES = ("iob1", "iob2", "iobes", "bmes")


def split_tag(tag: str) -> tuple[str, str]:
    """('B', 'PER') from 'B-PER'; ('O', '') from 'O'."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or len(prefix) != 1:
        return "?", tag
    return prefix.upper(), kind


def detect_scheme(sequences: Sequence[Sequence[str]]) -> str:
    prefixes = {split_tag(tag)[0] for tags in sequences for tag in tags}
    if "M" in prefixes:
        return "bmes"
    if prefixes & {"E", "S"}:
        return "iobes"
    return "iob1"  # IOB1 conversion leaves valid IOB2 unchanged, so it serves both


def check_tags(tags: Sequence[str], scheme: str) -> str | None:
    """The first tag that the scheme cannot hold, or None."""
    allowed = {"iob1": "BIO", "iob2": "BIO", "iobes": "BIESO", "bmes": "BMESO"}[scheme]
    for tag in tags:
        prefix, _ = split_tag(tag)
        if prefix not in allowed:
            return tag
    return None


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    out: list[str] = []
    previous = ""
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "O":
            out.append("O")
        elif scheme in ("iobes", "bmes"):
            out.append(f"B-{kind}" if prefix in ("B", "S") else f"I-{kind}")
        elif prefix == "I" and previous != kind:  # IOB1, or a broken IOB2 sequence
            out.append(f"B-{kind}")
        else:
            out.append(f"{prefix}-{kind}")
        previous = kind if prefix != "O" else ""
        if scheme in ("iobes", "bmes") and prefix in ("E", "S"):
            previous = ""
    return out


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) for each entity in an IOB2 sequence. An I-X that does
    not continue an X entity starts a new one, so no predicted word is dropped."""
    spans: list[tuple[str, int, int]] = []
    kind, start = "", -1
    for i, tag in enumerate([*tags, "O"]):
        prefix, this = split_tag(tag)
        continues = prefix == "I" and this == kind and start >= 0
        if start >= 0 and not continues:
            spans.append((kind, start, i))
            start, kind = -1, ""
        if prefix in ("B", "I") and not continues:
            start, kind = i, this
    return spans
