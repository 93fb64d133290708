"""Tasks: what the model predicts and how it is scored. One module per task."""

from tunelab.tasks.base import Task

__all__ = ["Task"]
