"""LP-FT and the training plan: the probe folded into the output layer gives the fitted
regression's probabilities, fine-tuning starts from the probe's decisions, and the number of
steps follows the data size."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import tiny_sentiment_setup
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression

from tunelab.config import parse_config
from tunelab.evaluation.calibration import fit_temperature
from tunelab.evaluation.probe import fit_linear_head
from tunelab.tasks.head_growth import head_inputs
from tunelab.training import plan as rules
from tunelab.training.plan import training_plan
from tunelab.training.probe_start import fit_probe, install


def scaled(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / x.std(0).mean()


def test_the_folded_head_gives_the_regressions_class_probabilities() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * rng.uniform(0.01, 5.0, size=6) + 3.0
    for n_classes in (2, 4):
        y = (x[:, :2].sum(1) * 3).astype(int) % n_classes
        weight, bias = fit_linear_head(x, y, n_classes + 1, False, seed=0)  # one class absent
        expected = LogisticRegression(max_iter=2000, random_state=0).fit(scaled(x), y)
        probs = softmax(x @ weight.T + bias, axis=1)
        assert probs[:, :n_classes] == pytest.approx(
            expected.predict_proba(scaled(x)), abs=2e-3)
        assert probs[:, n_classes].max() < 0.01  # the absent class is never chosen


def test_the_folded_multi_label_head_gives_each_labels_probability() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0.5, np.zeros(200, bool)], 1).astype(float)
    weight, bias = fit_linear_head(x, y, 3, True, seed=0)
    for j in (0, 1):
        expected = LogisticRegression(max_iter=2000, random_state=0).fit(scaled(x), y[:, j])
        assert expit(x @ weight[j] + bias[j]) == pytest.approx(
            expected.predict_proba(scaled(x))[:, 1], abs=2e-3)
    assert expit(x @ weight[2] + bias[2]).max() < 0.01  # never on in the sample: off


def test_fine_tuning_starts_from_a_fitted_probe(tiny_model_dir: Path) -> None:
    data, task, tokenizer, model = tiny_sentiment_setup(tiny_model_dir, 80, seed=3)
    assert model.tunelab_new_head  # the checkpoint has no classifier
    probe = fit_probe(model, task, tokenizer, data, max_examples=80, seed=0)
    with head_inputs(model, 2):
        features = task.logits_for_examples(model, tokenizer, data)
    install(model, probe.start, 2)
    started = task.logits_for_examples(model, tokenizer, data)
    assert started == pytest.approx(features @ probe.start.weight.numpy().T
                                    + probe.start.bias.numpy(), abs=1e-4)
    gold = task.label_ids(data)
    served = features @ probe.head.weight.numpy().T + probe.head.bias.numpy()
    assert (served.argmax(1) == gold).mean() > 0.6  # the probe learnt the cue words
    # this random model's features differ by less than dropout shakes them, so the start,
    # fitted under dropout, is far calmer than the served probe (see fit_probe)
    assert np.abs(started).max() < np.abs(served).max()


def plan_for(n_train: int, **training: Any) -> Any:
    config = parse_config({"task": "text-classification", "data": {"train": "unused.csv"},
                           "training": training}, source="test")
    return training_plan(config, n_train)


def test_steps_follow_the_data_size() -> None:
    small, medium, large = (plan_for(n) for n in (1_000, 3_000, 200_000))
    assert small.total_steps >= rules.MIN_STEPS and small.epochs <= rules.MAX_EPOCHS
    assert medium.total_steps >= rules.MIN_STEPS and medium.epochs >= rules.MIN_EPOCHS
    assert large.epochs == rules.MIN_EPOCHS  # big data: the usual few epochs
    tiny = plan_for(8)
    assert tiny.epochs == rules.MAX_EPOCHS  # a cap, where MIN_STEPS would need 300 epochs
    for plan in (small, medium, large, tiny):
        evaluations = plan.total_steps / plan.eval_steps
        assert 0.8 * rules.EVALUATIONS <= evaluations <= rules.EVALUATIONS
        assert plan.logging_steps == max(1, -(-plan.total_steps * 5 // 100))
    fixed = plan_for(3_000, epochs=2, eval_every="epoch")
    assert fixed.total_steps == 2 * fixed.steps_per_epoch and fixed.eval_steps is None


def test_temperature_scaling_finds_the_temperature_that_made_the_labels() -> None:
    rng = np.random.default_rng(2)
    true = rng.normal(scale=2.0, size=(4000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(true, axis=1)])
    assert fit_temperature(true * 4.0, labels) == pytest.approx(4.0, rel=0.1)


def test_a_run_records_its_temperature_and_a_lower_dev_nll(tiny_config: dict[str, Any]
                                                            ) -> None:
    import tunelab

    record = tunelab.train(parse_config(tiny_config), overwrite=True).record
    calibration = record.calibration
    assert calibration["temperature"] > 0
    assert calibration["dev_nll_after"] <= calibration["dev_nll_before"]


def test_the_head_starts_from_the_probe_with_many_labels_and_random_with_few() -> None:
    from types import SimpleNamespace

    from tunelab.training.probe_start import (
        HEAD_LR,
        PROBE_START_MIN_LABELS,
        head_rate,
        head_start,
    )

    def config(**training: Any) -> Any:
        return parse_config({"task": "text-classification", "data": {"train": "unused.csv"},
                             "training": training}, source="test")
    few = SimpleNamespace(labels=["a", "b"])
    many = SimpleNamespace(labels=[f"intent{i}" for i in range(PROBE_START_MIN_LABELS)])
    new, continued = SimpleNamespace(tunelab_new_head=True), SimpleNamespace(
        tunelab_new_head=False)
    assert head_start(config(), many, new) == "probe"
    assert head_start(config(), few, new) == "random"
    assert head_start(config(), many, continued) == "kept"  # a trained head keeps its rows
    assert head_start(config(head_init="probe"), few, new) == "probe"
    assert head_start(config(head_init="keep"), many, new) == "kept"
    assert head_rate(config(), "random", 5e-5) == HEAD_LR
    assert head_rate(config(), "random", 1e-2) == 1e-2  # never slower than the run
    assert head_rate(config(), "probe", 5e-5) is None
    assert head_rate(config(head_lr=3e-3), "kept", 5e-5) == 3e-3
