"""Commands for trust: `tunelab explain` (why the model decided) and `tunelab mask`
(personal data replaced in a data file). `tunelab.cli` mounts them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tunelab.console import err, out, quiet_libraries
from tunelab.errors import TunelabError


def explain(
    run: Annotated[Path, typer.Argument(help="Run directory, such as runs/demo")],
    text: Annotated[str, typer.Argument(help="The text to explain")],
    label: Annotated[str | None, typer.Option(
        help="Explain this label instead of the predicted one (NER: only entities of this "
        "type)")] = None,
    backend: Annotated[str, typer.Option(help="auto (exported int8 ONNX if present, else "
                                         "torch), torch, onnx, onnx-fp32")] = "auto",
    method: Annotated[str, typer.Option(
        help="auto (Integrated Gradients on torch, occlusion on ONNX), "
        "integrated-gradients, occlusion")] = "auto",
    steps: Annotated[int, typer.Option(min=4, max=512, help="Integrated Gradients: "
                                       "steps from the baseline")] = 32,
    output: Annotated[Path | None, typer.Option(
        help="Also write it: .json, .html (words highlighted) or .png (a bar per word)")
    ] = None,
) -> None:
    """Which words made the model decide: a score per word (positive: raised the
    explained probability), printed as JSON."""
    from tunelab.explain.render import FORMATS, write

    if output is not None and output.suffix.lower() not in FORMATS:
        raise TunelabError(f"--output {output}: give a file ending in "
                           f"{', '.join(FORMATS)}")
    quiet_libraries()
    from tunelab.explain.explainer import explain as run_explain
    from tunelab.predictor import Predictor  # not tunelab.api: that imports the trainer

    predictor = Predictor(run, backend)
    explanation = run_explain(predictor, text, label, method, steps)
    sys.stdout.write(json.dumps(explanation, ensure_ascii=False) + "\n")
    if output is not None:
        write(text, explanation, output)
        err.print(f"wrote {output}")


def mask(
    file: Annotated[Path, typer.Argument(help="A .csv, .tsv, .jsonl or CoNLL file")],
    output: Annotated[Path, typer.Option(help="Where to write the masked copy")],
    columns: Annotated[str | None, typer.Option(
        help="Comma-separated text columns to mask (default: text); CoNLL: the tokens")
    ] = None,
    types: Annotated[str | None, typer.Option(
        help="Comma-separated types (default: all but person): email, phone, card, iban, "
        "ip, credential_url, cn_id, person")] = None,
    names_run: Annotated[Path | None, typer.Option(
        help="A token-classification run whose PER entities are masked as <PERSON_n>")
    ] = None,
    link_rows: Annotated[bool, typer.Option(
        "--link-rows", help="Number across the file, so one value gets one placeholder in "
        "every row (this links a person's rows; leave it off for training data)")] = False,
) -> None:
    """Replace personal data with numbered placeholders (<PHONE_1>, <EMAIL_2>, ...),
    numbered afresh in each row: the same value gets the same placeholder within a row."""
    from tunelab.config_checks import validate_options
    from tunelab.privacy.options import MaskOptions

    chosen = {"types": [t.strip() for t in types.split(",")]} if types else {}
    options = validate_options(MaskOptions, {
        **chosen, "names_run": names_run, "link_rows": link_rows},
        lambda name: "--" + (name or "types").replace("_", "-"))
    quiet_libraries()
    from tunelab.privacy.files import mask_file

    counts = mask_file(file, output, options,
                       [c.strip() for c in columns.split(",")] if columns else None)
    found = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing"
    out.print(f"wrote {output}: values masked: {found}", highlight=False)


def audit(
    limit: Annotated[int, typer.Option(min=1, help="How many of the newest events")] = 50,
    action: Annotated[str | None, typer.Option(
        help="Only this action: key.created, key.revoked, model.promoted, "
        "model.rolled_back, retrain.started")] = None,
) -> None:
    """Who changed what in the store: keys created and revoked (by label, never the key),
    models promoted and rolled back, retrains started."""
    from rich.table import Table

    from tunelab.store.audit import ACTIONS, audit_events
    from tunelab.store.db import describe_database

    if action is not None and action not in ACTIONS:
        raise TunelabError(f"--action {action}: choose one of {', '.join(ACTIONS)}")
    events = audit_events(limit, action)
    table = Table("when (UTC)", "who", "action", "target", "detail",
                  title=f"audit log of {describe_database()}")
    for e in events:
        detail = ", ".join(f"{k}={v}" for k, v in (e.detail or {}).items() if v is not None)
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.action, e.target, detail)
    out.print(table if events else "no audit events yet")


COMMANDS = (explain, mask, audit)
