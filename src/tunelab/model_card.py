"""The model card written as README.md in a run directory: the Hugging Face model-card
format (YAML front matter with the model-index test metrics), rendered from the run
record by huggingface_hub's template machinery."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from tunelab.evaluation.report import comparison_table
from tunelab.hf_artefacts import loading_guide, word_level_note
from tunelab.models import hub_id
from tunelab.record import RunRecord
from tunelab.tasks.base import Task


def card_data(record: RunRecord, task: Task) -> ModelCardData:
    """The front matter: base model, tags and the test split's headline metrics."""
    test_source = record.sources.get("test", "test split")
    results = [EvalResult(task_type=record.task, dataset_type="custom",
                          dataset_name=test_source, dataset_split="test",
                          metric_type=name, metric_value=float(record.test[name]),
                          metric_name=f"test {name}")
               for name in task.headline_metrics if isinstance(record.test.get(name), float | int)]
    return ModelCardData(model_name=record.name, base_model=hub_id(record.model),
                         library_name="transformers", pipeline_tag=task.pipeline_tag,
                         tags=["tunelab", record.task, f"method-{record.method}"],
                         eval_results=results or None)


def model_card(record: RunRecord, task: Task, per_class: str, run_path: str,
               model_folder: Path) -> str:
    """`model_folder`: the saved model as written, which decides how it loads."""
    labels = record.labels
    shown = ", ".join(labels[:20]) + (f" ... ({len(labels)} in all)" if len(labels) > 20 else "")
    template = files("tunelab").joinpath("templates/model_card.md").read_text("utf-8")
    card = ModelCard.from_template(
        card_data(record, task), template_str=template, record=record,
        labels_shown=shown, head_description=task.head_description(),
        intended_use=task.intended_use,
        comparison=comparison_table(record.rows(), task.headline_metrics),
        per_class=per_class.rstrip(), run_path=run_path,
        loading=loading_guide(task, f"{run_path}/model", model_folder),
        word_note=word_level_note(task))
    return str(card)
