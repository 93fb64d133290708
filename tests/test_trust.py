"""Trust: explanations (Integrated Gradients on torch, occlusion on ONNX) and personal data
masked in data files, runs, the service's logs and feedback; the store's audit log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import POSITIVE, ROOT, sentiment_rows, write_csv
from fastapi.testclient import TestClient

import tunelab
from tunelab.config import parse_config
from tunelab.errors import TunelabError
from tunelab.explain.explainer import explain
from tunelab.privacy.checksums import cn_id_check_char, cn_resident_id_valid, luhn_valid
from tunelab.privacy.masker import Masker
from tunelab.privacy.options import MaskOptions
from tunelab.serving.app import ServeSettings, create_app
from tunelab.serving.keys import create_key


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunelab.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **env})


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("explained")
    files = {split: write_csv(tmp / f"{split}.csv", sentiment_rows(n, seed))
             for split, n, seed in (("train", 96, 1), ("dev", 24, 2), ("test", 24, 3))}
    run = tunelab.train(parse_config({
        "name": "explained", "output_dir": str(tmp / "runs"), "seed": 7, "threads": 1,
        "model": {"name": str(tiny_model_dir)},
        "data": {k: str(v) for k, v in files.items()} | {"max_length": 32},
        "training": {"epochs": 8, "batch_size": 8, "lr": 2e-3, "fallback_to_probe": False,
                     "extend_budget": 0},
        "evaluation": {"baselines": False}})).run_dir
    tunelab.api.export(run)
    return run


# --- explanations ------------------------------------------------------------------
@pytest.mark.parametrize("backend, method", [("torch", "integrated-gradients"),
                                             ("onnx-fp32", "occlusion")])
def test_the_cue_word_explains_the_prediction(sentiment_run: Path, backend: str,
                                              method: str) -> None:
    model = tunelab.load(sentiment_run, backend)
    for text, cue in (("the movie was really wonderful", "wonderful"),
                      ("the plot was quite horrible", "horrible")):
        got = explain(model, text)
        assert got["method"] == method
        assert got["label"] == model.predict(text)["label"]
        assert got["label"] == ("positive" if cue in POSITIVE else "negative")
        top = max(got["words"], key=lambda w: w["score"])
        assert top["text"] == cue and text[top["start"]:top["end"]] == cue
        if method == "integrated-gradients":  # attributions add up to f(x) - f(baseline)
            assert got["completeness_gap"] < 0.05
        # explaining the other label turns the cue word's score negative
        other = "negative" if got["label"] == "positive" else "positive"
        flipped = explain(model, text, label=other)
        assert flipped["label"] == other
        assert next(w for w in flipped["words"] if w["text"] == cue)["score"] < 0


def test_explain_cli_writes_json_html_and_png_and_refuses_bad_input(
        sentiment_run: Path, tmp_path: Path) -> None:
    text = "the acting was terrible"
    for suffix in (".json", ".html", ".png"):
        result = cli("explain", str(sentiment_run), text, "--output", str(tmp_path / f"x{suffix}"))
        assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "negative"
    assert json.loads((tmp_path / "x.json").read_text())["text"] == text
    assert "terrible</span>" in (tmp_path / "x.html").read_text()
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
    for args, says in ((["--label", "postive"], "label 'postive' is not one of the model's "
                        "labels: negative, positive"),
                       (["--output", str(tmp_path / "x.pdf")], "give a file ending in"),
                       (["--method", "integrated-gradients", "--backend", "onnx"],
                        "needs the PyTorch model")):
        bad = cli("explain", str(sentiment_run), text, *args)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_ner_explanations_are_per_entity(tiny_config: dict[str, Any], tmp_path: Path) -> None:
    from test_token_classification import conll_file

    files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    run = tunelab.train(parse_config({**tiny_config, "task": {"type": "token-classification"},
                                      "data": {**files, "max_length": 16}})).run_dir
    model = tunelab.load(run, "torch")
    sentence = "Anna visited great Paris ."
    predicted = model.predict(sentence)["entities"]
    assert predicted, "no entity predicted: nothing to explain"
    for method in ("integrated-gradients", "occlusion"):
        got = explain(model, sentence, method=method)
        assert [(e["text"], e["type"]) for e in got["entities"]] == \
            [(e["text"], e["type"]) for e in predicted]
        for entity in got["entities"]:
            assert [w["text"] for w in entity["words"]] == sentence.split()
            inside = [w["score"] for w in entity["words"]
                      if entity["start"] <= w["start"] < entity["end"]]
            assert max(inside) > 0  # the entity's own words support its tags
    kind = predicted[0]["type"]
    only = explain(model, sentence, label=kind, method="occlusion")["entities"]
    assert only and all(e["type"] == kind for e in only)
    with pytest.raises(TunelabError, match="not one of the model's entity types"):
        explain(model, sentence, label="MISC-X")


def test_service_explains_with_its_own_limits(sentiment_run: Path) -> None:
    key = create_key("explainer")
    headers = {"Authorization": f"Bearer {key}"}
    settings = ServeSettings(run=sentiment_run, explain_rate_limit=1.0, explain_max_chars=60)
    with TestClient(create_app(settings)) as http:
        assert http.post("/v1/explain", json={"text": "great"}).status_code == 401
        answer = http.post("/v1/explain", json={"text": "the movie was really good"},
                           headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()["explanation"]
        assert body["method"] == "occlusion" and body["label"] == "positive"  # ONNX served
        assert max(body["words"], key=lambda w: w["score"])["text"] == "good"
        limited = http.post("/v1/explain", json={"text": "sad"}, headers=headers)
        limited2 = http.post("/v1/explain", json={"text": "sad"}, headers=headers)
        assert 429 in (limited.status_code, limited2.status_code)
        assert "explain rate limit" in (limited.text + limited2.text)
        # predictions keep their own, larger budget
        assert http.post("/v1/predict", json={"texts": ["sad"]},
                         headers=headers).status_code == 200
    settings = ServeSettings(run=sentiment_run, explain_rate_limit=0, explain_max_chars=60)
    with TestClient(create_app(settings)) as http:
        long = http.post("/v1/explain", json={"text": "good " * 20}, headers=headers)
        assert long.status_code == 413 and "at most 60 to explain" in long.text
        unknown = http.post("/v1/explain", json={"text": "good", "label": "meh"},
                            headers=headers)
        assert unknown.status_code == 422 and "not one of the model's labels" in unknown.text


# --- personal data -------------------------------------------------------------------
@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker()


def a_card(prefix: str, length: int) -> str:
    body = prefix + "0" * (length - len(prefix) - 1)
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


def test_check_digits() -> None:
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    first17 = "11010519491231002"
    assert cn_id_check_char(first17) == "X" and cn_resident_id_valid(first17 + "X")
    assert not cn_resident_id_valid(first17 + "1")
    assert not cn_resident_id_valid("11010519491331002X")  # month 13


def test_each_type_is_found_in_english_and_chinese(masker: Masker) -> None:
    cn_id = "11010519491231002X"
    cn_card = a_card("6222", 19)
    cases = {
        "Mail jane.roe@example.org today": ("email", "jane.roe@example.org"),
        "请发邮件到zhang.wei@example.cn\uff0c谢谢": ("email", "zhang.wei@example.cn"),
        "Call +1 415-555-0134 after six": ("phone", "+1 415-555-0134"),
        "我的手机号是13812345678。": ("phone", "13812345678"),
        "card 4111 1111 1111 1111 was charged": ("card", "4111 1111 1111 1111"),
        f"银行卡号{cn_card}已冻结": ("card", cn_card),
        "IBAN GB82 WEST 1234 5698 7654 32 please": ("iban", "GB82 WEST 1234 5698 7654 32"),
        "from 192.168.10.42 at noon": ("ip", "192.168.10.42"),
        "use postgres://admin:s3cret@db.example.com/app": (
            "credential_url", "postgres://admin:s3cret@db.example.com/app"),
        f"身份证号码{cn_id}。": ("cn_id", cn_id),
    }
    for text, (kind, value) in cases.items():
        found = [(k, text[a:b]) for k, a, b, _ in masker.find(text)]
        assert (kind, value) in found, (text, found)
    # a wrong check digit is a number, not a card or an ID
    assert masker.find("order 4111 1111 1111 1112 shipped") == []
    assert masker.find(f"编号{cn_id[:-1]}1。") == []


def test_placeholders_are_numbered_per_text_unless_rows_are_linked(masker: Masker) -> None:
    texts = ["mail a@example.com or b@example.com, a@example.com",
             "b@example.com again, and +44 20 7946 0958"]
    with masker.session():
        assert masker.mask(texts) == ["mail <EMAIL_1> or <EMAIL_2>, <EMAIL_1>",
                                      "<EMAIL_1> again, and <PHONE_1>"]
        assert masker.mask_tokens([["to", "a@example.com"], ["cc", "b@example.com"]]) == \
            [["to", "<EMAIL_1>"], ["cc", "<EMAIL_1>"]]
        assert masker.made == {"email": 6, "phone": 1}
    linked = Masker(MaskOptions(link_rows=True))
    with linked.session():
        assert linked.mask(texts) == ["mail <EMAIL_1> or <EMAIL_2>, <EMAIL_1>",
                                      "<EMAIL_2> again, and <PHONE_1>"]
    neutral = Masker(MaskOptions(placeholders="neutral"))
    assert neutral.mask(["a@example.com, +44 20 7946 0958, a@example.com"]) == \
        ["<PII_1>, <PII_2>, <PII_1>"]


def test_mask_pii_keeps_personal_data_out_of_the_run(tiny_config: dict[str, Any],
                                                     tmp_path: Path) -> None:
    rows = [(f"{text} mail user{i}@example.com or call +1 415-555-{i:04d}", label)
            for i, (text, label) in enumerate(sentiment_rows(48, seed=4))]
    for split in ("train", "dev", "test"):
        write_csv(Path(tiny_config["data"][split]), rows)
    raw = {**tiny_config, "training": {**tiny_config["training"], "epochs": 1}}
    raw["data"] = {**tiny_config["data"], "mask_pii": True}
    run = tunelab.train(parse_config(raw)).run_dir
    written = "".join(p.read_text(errors="ignore") for p in run.rglob("*")
                      if p.is_file() and p.suffix in (".jsonl", ".json", ".txt", ".md"))
    assert "<EMAIL_" in written and "<PHONE_" in written
    assert "@example.com" not in written and "415-555" not in written
    bad = {**raw, "data": {**raw["data"], "mask_pii": {"types": ["email", "passport"]}}}
    with pytest.raises(TunelabError, match=r"mask_pii.types: unknown type 'passport'"):
        parse_config(bad)


def test_mask_command_on_csv_and_conll(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", [("call 13812345678 now", "a"),
                                             ("again 13812345678", "b")])
    result = cli("mask", str(source), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        "text,label", "call <PHONE_1> now,a", "again <PHONE_1>,b"]
    assert "values masked: 2 phone" in result.stdout
    source = write_csv(tmp_path / "in.csv", [("call 13812345678 or 13912345678", "a"),
                                             ("again 13912345678", "b")])
    result = cli("mask", str(source), "--output", str(tmp_path / "out.csv"), "--link-rows")
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == [
        "call <PHONE_1> or <PHONE_2>,a", "again <PHONE_2>,b"]
    conll = tmp_path / "in.conll"
    conll.write_text("Mail O\nbob@example.com O\n\nCall O\n+1 O\n")
    result = cli("mask", str(conll), "--output", str(tmp_path / "out.conll"))
    assert result.returncode == 0, result.stderr
    assert "<EMAIL_1> O" in (tmp_path / "out.conll").read_text()
    for args, says in ((["--types", "email,passport"], "--types: unknown type 'passport'"),
                       (["--types", "person"], "'person' needs names_run"),
                       (["--columns", "body"], "no column 'body'")):
        bad = cli("mask", str(source), "--output", str(tmp_path / "x.csv"), *args)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
        assert not (tmp_path / "x.csv").exists()


def test_names_come_from_a_token_classification_run(tiny_config: dict[str, Any],
                                                    tmp_path: Path, sentiment_run: Path
                                                    ) -> None:
    from test_token_classification import conll_file

    files = {s: str(conll_file(tmp_path / f"{s}.txt", 12)) for s in ("train", "dev", "test")}
    ner = tunelab.train(parse_config({**tiny_config, "task": {"type": "token-classification"},
                                      "data": {**files, "max_length": 16}})).run_dir
    sentence = "Anna visited great Paris ."
    people = [e for e in tunelab.load(ner).predict(sentence)["entities"] if e["type"] == "PER"]
    assert people, "the NER run finds no person: nothing to mask"
    names = Masker(MaskOptions(types=["person"], names_run=ner))
    expected = sentence
    for entity in reversed(people):
        expected = expected[:entity["start"]] + "<PERSON_1>" + expected[entity["end"]:]
    assert names.mask([sentence]) == [expected]
    with pytest.raises(TunelabError, match="is a text-classification run; give a "
                       "token-classification run"):
        Masker(MaskOptions(names_run=sentiment_run))


def test_service_masks_feedback_and_logged_texts(sentiment_run: Path, store_url: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from tunelab.store.records import feedback_rows

    logging.getLogger("tunelab.serve").addHandler(caplog.handler)

    key = create_key("masked")
    headers = {"Authorization": f"Bearer {key}"}
    text = "great service, call me on 13812345678"
    for mode, expected in (("on", "great service, call me on <PHONE_1>"), ("off", text)):
        settings = ServeSettings(run=sentiment_run, mask_pii=mode, log_texts=True)
        with TestClient(create_app(settings)) as http:
            assert http.post("/v1/predict", json={"texts": [text]},
                             headers=headers).status_code == 200
            stored = http.post("/v1/feedback", json={"text": text, "correct_label":
                                                     "positive"}, headers=headers)
            assert stored.status_code == 201, stored.text
        assert feedback_rows(sentiment_run)[-1].text == expected
        logged = [r.fields["texts"] for r in caplog.records if "texts" in getattr(r, "fields", {})]
        assert logged == [[expected]]
        caplog.clear()
    logging.getLogger("tunelab.serve").removeHandler(caplog.handler)


def test_audit_log_names_who_did_what_never_the_key(store_url: str, sentiment_run: Path
                                                    ) -> None:
    from tunelab.record import RunRecord
    from tunelab.store.audit import audit_events
    from tunelab.store.records import record_run

    env = {"TUNELAB_DB_URL": store_url, "TUNELAB_ACTOR": "ci-bot"}
    created = cli("keys", "create", "--name", "billing", **env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert cli("keys", "revoke", "billing", **env).returncode == 0
    record_run(sentiment_run, RunRecord.model_validate_json(
        (sentiment_run / "metrics.json").read_text()))
    assert cli("models", "promote", str(sentiment_run), "--force", **env).returncode == 0
    events = [(e.actor, e.action, e.target) for e in audit_events()]
    assert events[:2] == [("ci-bot", "key.created", "billing"),
                          ("ci-bot", "key.revoked", "billing")]
    assert events[2][1] == "model.promoted" and events[2][2] == str(sentiment_run.resolve())
    shown = cli("audit", **env)
    assert shown.returncode == 0 and "key.revoked" in shown.stdout
    assert secret not in shown.stdout and secret.split("_", 2)[2] not in json.dumps(
        [e.detail for e in audit_events()])
    bad = cli("audit", "--action", "deleted", **env)
    assert bad.returncode == 2 and "choose one of" in bad.stderr
