"""What makes a saved model folder load with plain transformers and peft, on any machine:
the base model named by its hub id rather than this machine's path, the label names in
`config.json` beside an adapter, and tunelab's model card as the folder's README.md in
place of peft's empty template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.methods.embedding_classifier import SETTINGS as EMBEDDING_SETTINGS
from tunelab.methods.embedding_classifier import loading_guide as embedding_guide
from tunelab.models import hub_id


def name_base_by_hub_id(model: Any, base_model: str) -> None:
    """Before saving: peft records the path the base was loaded from (inside this
    machine's virtual environment for a packaged model); record its hub id instead. A
    local directory keeps the absolute path peft recorded, which is where it loads from."""
    hub = hub_id(base_model)
    if hub == base_model and Path(base_model).expanduser().is_dir():
        return
    for config in getattr(model, "peft_config", {}).values():
        config.base_model_name_or_path = hub


def write_label_config(model: Any, folder: Path) -> None:
    """An adapter folder gets the base model's config with this run's labels, so that
    `AutoConfig.from_pretrained(folder)` gives the head's size and label names."""
    if (folder / "config.json").is_file():
        return
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.save_pretrained(folder)


def loading_guide(task: Any, model_path: str, folder: Path) -> str:
    """The model card's "Load it without tunelab" section, as code that runs: a plain
    transformers folder, a peft adapter on the base model, or neither (tunelab's own
    layers, such as bottleneck adapters)."""
    if (folder / EMBEDDING_SETTINGS).is_file():
        return embedding_guide(model_path)
    adapter = (folder / "adapter_config.json").is_file()
    plain = (folder / "model.safetensors").is_file()
    pipeline_task = task.pipeline_tag
    extra = (', aggregation_strategy="first"' if pipeline_task == "token-classification"
             else ", top_k=None")
    if pipeline_task is None or not (adapter or plain):
        return ("This model needs tunelab's own code (bottleneck adapters, or a task with "
                "no transformers pipeline): load it with `tunelab.load`, or export it "
                "(`tunelab export`) to ONNX for other runtimes.")
    if not adapter:
        return ("```python\nfrom transformers import pipeline\n\n"
                f'model = pipeline("{pipeline_task}", model="{model_path}"{extra})\n'
                'model("an example text")\n```')
    auto = task.auto_model.__name__
    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    return ("```python\nfrom peft import PeftModel\n"
            f"from transformers import AutoConfig, {auto}, AutoTokenizer, pipeline\n\n"
            f'config = AutoConfig.from_pretrained("{model_path}")  # the labels\n'
            f'base = {auto}.from_pretrained("{base}", config=config)\n'
            f'model = PeftModel.from_pretrained(base, "{model_path}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{model_path}")\n'
            f'model = pipeline("{pipeline_task}", model=model, tokenizer=tokenizer{extra})\n'
            'model("an example text")\n```')


def word_level_note(task: Any) -> str:
    if task.pipeline_tag != "token-classification":
        return ""
    return ("Each word is tagged by its first sub-word token, as in training: use "
            '`aggregation_strategy="first"` (the other sub-words were not trained).')
