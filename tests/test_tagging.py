import pytest

from tunelab.tasks.tagging import check_tags, detect_scheme, entity_spans, to_iob2


@pytest.mark.parametrize(("scheme", "tags", "expected"), [
    ("iob1", ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]),
    ("iob2", ["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
    ("iobes", ["B-ORG", "I-ORG", "E-ORG", "S-PER", "O"], ["B-ORG", "I-ORG", "I-ORG", "B-PER", "O"]),
    ("bmes", ["B-NAME", "E-NAME", "O", "S-LOC", "B-ORG", "M-ORG", "E-ORG"],
     ["B-NAME", "I-NAME", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG"]),
    ("iobes", ["S-PER", "S-PER"], ["B-PER", "B-PER"]),
])
def test_schemes_convert_to_iob2(scheme: str, tags: list[str], expected: list[str]) -> None:
    assert to_iob2(tags, scheme) == expected


def test_scheme_detection() -> None:
    assert detect_scheme([["B-X", "M-X", "E-X"]]) == "bmes"
    assert detect_scheme([["B-X", "I-X", "E-X"], ["S-Y"]]) == "iobes"
    assert detect_scheme([["B-X", "I-X", "O"]]) == "iob1"  # which leaves IOB2 unchanged


def test_invalid_tag_for_scheme() -> None:
    assert check_tags(["B-X", "E-X"], "iob2") == "E-X"
    assert check_tags(["B-X", "PER"], "iobes") == "PER"
    assert check_tags(["B-X", "I-X", "O"], "iob2") is None


def test_entity_spans_from_iob2() -> None:
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG", "I-MISC"]) == [
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 6), ("MISC", 6, 7)]
    assert entity_spans(["O", "O"]) == []
