"""Where a run is trained and when an existing run may be replaced.

A run trains in a hidden work folder next to its final place (`.NAME.partial`) and is
renamed into place only when it is complete, so `--overwrite` keeps the old run until the
new one exists, and a failed or killed run never leaves a half-built run directory. Only a
directory that tunelab wrote is ever replaced, and never the store's production model."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import ConfigError
from tunelab.rundir import RUN_MARKER, is_run, work_dir, write_text
from tunelab.training.trainer import last_checkpoint

log = logging.getLogger("tunelab")


@dataclass(frozen=True)
class RunSlot:
    final: Path
    work: Path
    checkpoint: str | None  # the checkpoint to resume from, if resuming


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def changed_keys(before_yaml: str, after_yaml: str) -> list[str]:
    before = _flatten(yaml.safe_load(before_yaml) or {})
    after = _flatten(yaml.safe_load(after_yaml) or {})
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def is_production(run_dir: Path) -> bool:
    """Whether the store marks this directory's model as production. A store that cannot
    be read answers False, with a warning: it must not stop a user from training."""
    try:
        from tunelab.store.records import production

        current = production()
    except Exception as error:
        log.warning("could not check the store for the production model (%s)", error)
        return False
    return current is not None and Path(current.path).resolve() == run_dir.resolve()


def refuse_replacing(run_dir: Path, what: str) -> None:
    """Errors for replacing `run_dir`: not a tunelab run, or the production model."""
    if not is_run(run_dir):
        raise ConfigError(f"{run_dir} exists and is not a tunelab run; {what} replaces only "
                          "run directories tunelab wrote. Move it away or choose another name")
    if is_production(run_dir):
        raise ConfigError(f"{run_dir} is the production model; {what} will not replace it. "
                          "Promote another run first (`tunelab models promote RUN`), or "
                          "choose another name")


def plan(run_dir: Path, config_yaml: str, resume: bool, overwrite: bool) -> RunSlot:
    """Check what the flags ask for against what is on disk; changes nothing."""
    work = work_dir(run_dir)
    if resume:
        if not work.is_dir():
            if is_run(run_dir) and (run_dir / "metrics.json").is_file():
                raise ConfigError(f"{run_dir} is a finished run: there is nothing to resume. "
                                  "Use --overwrite to train it again, or another name")
            raise ConfigError(f"{run_dir}: no interrupted run to resume (no {work.name}); "
                              "start it without --resume")
        saved = work / "config.yaml"
        if saved.is_file():
            changed = changed_keys(saved.read_text(encoding="utf-8"), config_yaml)
            if changed:
                raise ConfigError(
                    f"--resume: the config changed since {run_dir} started ({', '.join(changed)}"
                    "); restore those values to resume, or train anew with --overwrite")
        checkpoint = last_checkpoint(work)
        if checkpoint is None:
            log.warning("%s: the interrupted run saved no checkpoint yet; training starts "
                        "from the beginning", run_dir)
        return RunSlot(run_dir, work, checkpoint)
    if run_dir.exists():
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already exists; pass --resume to continue it, --overwrite to replace "
                "it, or choose another name with --set name=NEW")
        refuse_replacing(run_dir, "--overwrite")
    return RunSlot(run_dir, work, None)


def open_work(slot: RunSlot, config_yaml: str) -> None:
    """Create the work folder (a fresh one unless resuming) with its marker and config."""
    if slot.checkpoint is None and slot.work.exists():
        if not (slot.work / RUN_MARKER).is_file():
            raise ConfigError(f"{slot.work} exists and was not written by tunelab; move it")
        shutil.rmtree(slot.work)
    slot.work.mkdir(parents=True, exist_ok=True)
    (slot.work / RUN_MARKER).touch()
    write_text(slot.work / "config.yaml", config_yaml)


def discard_unresumable(slot: RunSlot) -> None:
    """After a failure: drop the work folder unless it holds a checkpoint to resume from."""
    if slot.work.is_dir() and last_checkpoint(slot.work) is None:
        shutil.rmtree(slot.work, ignore_errors=True)
