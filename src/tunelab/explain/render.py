"""An explanation as HTML (words highlighted) or as a PNG (a bar per word)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from tunelab.rundir import atomic_path, write_json, write_text

FORMATS = (".json", ".html", ".png")


def _views(explanation: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, words) per explained target: the label, or each entity."""
    if "entities" in explanation:
        return [(f"{e['type']}: {e['text']} (p={e['probability']:.2f})", e["words"])
                for e in explanation["entities"]]
    return [(f"{explanation['label']} (p={explanation['probability']:.2f})",
             explanation["words"])]


def to_html(text: str, explanation: dict[str, Any]) -> str:
    parts = [f"<p><b>method</b>: {html.escape(explanation['method'])}; green raised the "
             "probability, red lowered it</p>"]
    for title, words in _views(explanation):
        peak = max((abs(w["score"]) for w in words), default=0.0) or 1.0
        marked, at = [], 0
        for w in words:
            marked.append(html.escape(text[at:w["start"]]))
            alpha = min(1.0, abs(w["score"]) / peak)
            colour = "0,150,0" if w["score"] >= 0 else "200,0,0"
            marked.append(f'<span title="{w["score"]:+.4f}" style="background:rgba({colour},'
                          f'{alpha:.2f})">{html.escape(w["text"])}</span>')
            at = w["end"]
        marked.append(html.escape(text[at:]))
        parts.append(f"<h3>{html.escape(title)}</h3><p>{''.join(marked)}</p>")
    if not _views(explanation):
        parts.append("<p>no entities found</p>")
    return ("<!doctype html><meta charset='utf-8'><title>tunelab explanation</title>"
            f"<body style='font-family:sans-serif'>{''.join(parts)}</body>\n")


def plot(explanation: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    views = _views(explanation) or [("no entities found", [])]
    height = sum(max(1.5, 0.28 * len(words) + 0.8) for _, words in views)
    figure = Figure(figsize=(7, height))
    axes = figure.subplots(len(views), 1, squeeze=False)[:, 0]
    for ax, (title, words) in zip(axes, views, strict=True):
        scores = [w["score"] for w in words]
        ax.barh(range(len(words)), scores, color=["tab:green" if s >= 0 else "tab:red"
                                                  for s in scores])
        ax.set_yticks(range(len(words)), [w["text"] for w in words])
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_title(f"{title}, {explanation['method']}", fontsize=10)
        ax.set_xlabel("attribution (probability)")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")


def write(text: str, explanation: dict[str, Any], path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".json":
        write_json(path, {"text": text, **explanation})
    elif suffix == ".html":
        write_text(path, to_html(text, explanation))
    else:
        plot(explanation, path)
