"""One entry point: explain a text with a loaded model (`Predictor`)."""

from __future__ import annotations

from typing import Any

from tunelab.errors import DataError
from tunelab.explain import occlusion
from tunelab.explain.target import EntityTarget, Words, label_index, pick_method
from tunelab.inference import softmax


def explain(predictor: Any, text: str, label: str | None = None, method: str = "auto",
            n_steps: int = 32, batch_size: int = 64) -> dict[str, Any]:
    """Per-word attributions. Text classification: for `label` (default: the predicted
    one); token classification: for each predicted entity (of type `label`, if given).
    A positive score means the word raised the explained probability."""
    if predictor.takes_pairs:
        raise DataError("explanations take single texts; this model was trained on text "
                        "pairs")
    predictor.check_inputs([text])
    chosen = pick_method(method, predictor.model)
    words = Words.of(text)
    args = (predictor.task, predictor.model, predictor.tokenizer, words)
    if predictor.task.name == "token-classification":
        return _entities(predictor, words, label, chosen, n_steps, batch_size)
    out: dict[str, Any] = {"method": chosen}
    target = None if label is None else label_index(predictor.task, label)
    if chosen == "integrated-gradients":
        from tunelab.explain import integrated

        probs, scores, delta = integrated.text_scores(*args, target, n_steps)
        out["completeness_gap"] = round(delta, 6)
    else:
        probs, scores = occlusion.text_scores(*args, target, batch_size)
    index = int(probs.argmax()) if target is None else target
    out.update(label=predictor.task.labels[index], probability=round(float(probs[index]), 6),
               words=words.scored(scores))
    return out


def _entities(predictor: Any, words: Words, label: str | None, chosen: str, n_steps: int,
              batch_size: int) -> dict[str, Any]:
    from tunelab.tasks.tagging import entity_spans

    task = predictor.task
    if label is not None and label not in task.entity_types:
        raise DataError(f"label '{label}' is not one of the model's entity types: "
                        f"{', '.join(task.entity_types)}")
    logits = task.word_logits(predictor.model, predictor.tokenizer, [words.words], batch_size)
    probs = softmax(logits[0])
    ids = probs.argmax(-1)
    entities = [EntityTarget(kind, first, end, [int(i) for i in ids[first:end]])
                for kind, first, end in entity_spans(task._tags(ids))
                if label is None or kind == label]
    args = (task, predictor.model, predictor.tokenizer, words, entities)
    if chosen == "integrated-gradients":
        from tunelab.explain import integrated

        results = integrated.entity_scores(*args, n_steps)
    else:
        results = [(s, None) for s in occlusion.entity_scores(*args, batch_size)]
    out = []
    for entity, (scores, delta) in zip(entities, results, strict=True):
        start, end = words.spans[entity.first][0], words.spans[entity.end - 1][1]
        row = {"text": words.text[start:end], "type": entity.type, "start": start, "end": end,
               "probability": round(occlusion.entity_probability(probs, entity, None), 6),
               "words": words.scored(scores)}
        if delta is not None:
            row["completeness_gap"] = round(delta, 6)
        out.append(row)
    return {"method": chosen, "entities": out}
