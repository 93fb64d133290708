"""The Exporter protocol. An exporter writes only its own folder, RUN/export/NAME/, and
is the only code that knows its file names: the predictor asks it which backends it
offers, where their files are and how to load them.

A new exporter is one module with an Exporter subclass, plus one registry line."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class ExportOptions(BaseModel):
    """What every exporter takes: the data its check runs on and the check's gates."""

    model_config = ConfigDict(extra="forbid")
    data: Path | None = Field(default=None, description="Labelled file for the agreement "
                              "check (default: the run's test, else dev file)")
    min_agreement: float = Field(default=0.99, ge=0.0, le=1.0, description="Share of "
                                 "predictions that must agree with PyTorch")
    max_drop_points: float = Field(default=1.0, description="Largest metric drop allowed, in "
                                   "points", json_schema_extra={"flags": ["--max-drop"]})


class Exporter(ABC):
    name: ClassVar[str]
    Options: ClassVar[type[ExportOptions]] = ExportOptions
    # backend name -> file names that serve it, preferred first
    backends: ClassVar[dict[str, tuple[str, ...]]]
    # the backend `auto` picks when this exporter has written its files
    default_backend: ClassVar[str]

    @classmethod
    def folder(cls, run_dir: Path) -> Path:
        return Path(run_dir) / "export" / cls.name

    @classmethod
    def find(cls, run_dir: Path, backend: str) -> Path | None:
        """The file that serves `backend` in this run, or None."""
        folder = cls.folder(run_dir)
        return next((folder / name for name in cls.backends[backend]
                     if (folder / name).is_file()), None)

    @classmethod
    @abstractmethod
    def load(cls, path: Path, threads: int | None = None, spinning: bool = True) -> Any:
        """A model with the call interface of a transformers model (`model(**batch).logits`)."""

    @abstractmethod
    def export(self, run_dir: Path, options: ExportOptions) -> dict[str, Any]:
        """Write this exporter's folder, or raise ExportError and write nothing. Returns the
        export report."""

    @staticmethod
    def markdown(report: dict[str, Any]) -> str:
        """The export report as Markdown, for the terminal and the folder."""
        return ""
