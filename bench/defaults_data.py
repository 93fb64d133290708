"""The defaults study's data: one cell's training sample, dev and test files, written under
bench/work/defaults/data. Text sets are sampled by examples per class, NER sets by
sentences; another seed draws another training sample, with the same dev and test."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from common import DATASETS, WORK, write_rows

OUT = WORK / "defaults"
SEED = 42


def sample_per_class(rows: list[tuple[str, str]], per_class: int, seed: int = 0
                     ) -> list[tuple[str, str]]:
    """Up to `per_class` rows of each label, a seeded random choice."""
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    counts: dict[str, int] = {}
    kept = []
    for text, label in shuffled:
        if counts.get(label, 0) < per_class:
            counts[label] = counts.get(label, 0) + 1
            kept.append((text, label))
    return kept


def write_csv(path: Path, rows: list[tuple[str, str]]) -> str:
    return str(write_rows(path, rows, ("text", "label")))


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(words, tags, strict=True))
                                for words, tags in sentences) + "\n", encoding="utf-8")
    return str(path)


def read_tsv(path: Path, header: bool) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1 if header else 0:]
    return [(parts[0], parts[-1]) for parts in (line.split("\t") for line in lines)
            if len(parts) >= 2]


def read_seq(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """ATIS/SNIPS: seq.in, seq.out and label, one example a line."""
    def lines(name: str) -> list[str]:
        return (folder / name).read_text(encoding="utf-8").splitlines()
    return lines("seq.in"), lines("seq.out"), lines("label")


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    sentences, words, tags = [], [], []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        words.append(parts[0])
        tags.append(parts[-1])
    return sentences


def some(rows: list[Any], n: int, seed: int = 0) -> list[Any]:
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[:n]


def dataset(name: str, size: int, seed: int = SEED) -> dict[str, Any]:
    """The task and data section of a run's config for one cell; files under OUT/data.
    Another seed draws another training sample (dev and test stay)."""
    data = OUT / "data"
    draw = 0 if seed == SEED else seed
    tag = "" if seed == SEED else f"_s{seed}"
    text = {"task": "text-classification", "max_length": 64}
    if name == "sst2":
        train = sample_per_class(read_tsv(DATASETS / "sst2/train.tsv", True), size, draw)
        dev = some(read_tsv(DATASETS / "sst2/dev.tsv", True), 500)
        return {**text, "train": write_csv(data / f"sst2_{size}{tag}.csv", train),
                "dev": write_csv(data / "sst2_dev.csv", dev),
                "test": write_csv(data / "sst2_test.csv", read_tsv(DATASETS / "sst2/test.tsv",
                                                                  True))}
    if name == "banking77":
        with (DATASETS / "banking77/train.csv").open(encoding="utf-8") as handle:
            rows = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
        with (DATASETS / "banking77/test.csv").open(encoding="utf-8") as handle:
            test = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
        return {**text, "train": write_csv(data / f"banking77_{size}{tag}.csv",
                                           sample_per_class(rows, size, draw)),
                "test": write_csv(data / "banking77_test.csv", test)}  # dev: 10% of train
    if name == "agnews":
        rows = read_tsv(DATASETS / "agnews/dev.tsv", False)  # a sample of AG's training set
        first = set(sample_per_class(rows, size))
        dev = some([row for row in rows if row not in first], 500)  # the same for every seed
        held = set(dev)
        chosen = sample_per_class([row for row in rows if row not in held], size, draw) \
            if draw else list(sample_per_class(rows, size))
        return {**text, "max_length": 128,
                "train": write_csv(data / f"agnews_{size}{tag}.csv", chosen),
                "dev": write_csv(data / "agnews_dev.csv", dev),
                "test": write_csv(data / "agnews_test.csv",
                                  some(read_tsv(DATASETS / "agnews/test.tsv", False), 2000))}
    if name == "snips":
        split = {}
        for part in ("train", "valid", "test"):
            words, _, labels = read_seq(DATASETS / "atis_snips/snips" / part)
            split[part] = list(zip(words, labels, strict=True))
        return {**text, "train": write_csv(data / f"snips_{size}{tag}.csv",
                                           sample_per_class(split["train"], size, draw)),
                "dev": write_csv(data / "snips_dev.csv", some(split["valid"], 500)),
                "test": write_csv(data / "snips_test.csv", split["test"])}
    if name == "atis":  # 21 intents, most of them rare: labels seen in training only
        split = {}
        for part in ("train", "valid", "test"):
            words, _, labels = read_seq(DATASETS / "atis_snips/atis" / part)
            split[part] = list(zip(words, labels, strict=True))
        known = {label for _, label in split["train"]}
        held = {part: [row for row in split[part] if row[1] in known] for part in ("valid", "test")}
        return {**text, "train": write_csv(data / f"atis_{size}{tag}.csv",
                                           sample_per_class(split["train"], size, draw)),
                "dev": write_csv(data / "atis_dev.csv", held["valid"]),
                "test": write_csv(data / "atis_test.csv", held["test"])}
    ner = {"task": "token-classification", "max_length": 128}
    if name == "conll2003":
        conll = DATASETS / "conll2003"
        return {**ner, "train": write_conll(data / f"conll_{size}{tag}.txt",
                                            some(read_conll(conll / "train.txt"), size, draw)),
                "dev": write_conll(data / "conll_dev.txt",
                                   some(read_conll(conll / "valid.txt"), 500)),
                "test": str(conll / "test.txt")}
    atis = DATASETS / "atis_snips/atis"

    def slots(part: str) -> list[tuple[list[str], list[str]]]:
        words, tags, _ = read_seq(atis / part)
        return [(w.split(), t.split()) for w, t in zip(words, tags, strict=True)]
    train = some(slots("train"), size, draw)
    known = {t[2:] for _, tags in train for t in tags if t != "O"}

    def seen(part: str) -> list[tuple[list[str], list[str]]]:
        """Sentences whose slot types all occur in the sample (tunelab refuses held-out
        entity types that training never saw)."""
        return [(w, t) for w, t in slots(part) if all(x == "O" or x[2:] in known for x in t)]
    return {**ner, "train": write_conll(data / f"atis_slots_{size}{tag}.txt", train),
            "dev": write_conll(data / f"atis_slots_dev{tag}.txt", seen("valid")),
            "test": write_conll(data / f"atis_slots_test{tag}.txt", seen("test"))}
