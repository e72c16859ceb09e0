"""The HTTP server end to end: uvicorn on a loopback port, called with a real HTTP client (httpx).
Every endpoint, every limit with its 4xx and message, server-sent generation equal to the one-shot
text, and streaming sessions equal to one read of the same text, expiring and capped."""

import json
import math
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from helpers import write_run_config

import rnnkit
from rnnkit.run import train_run
from rnnkit.serve import Limits, create_app

POSITIVE, NEGATIVE = ["great", "good", "fine"], ["bad", "awful", "poor"]


class Server:
    """``create_app(bundle, limits)`` served by uvicorn in a thread on a free loopback port."""

    def __init__(self, bundle, **limits) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(
            create_app(bundle, Limits(**limits)), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classifier")
    rng = np.random.default_rng(0)
    rows = ["text,label"]
    for i in range(120):
        words = list(rng.choice(["the", "film", "was", "a", "plot"], 3)) + list(
            rng.choice(POSITIVE if i % 2 else NEGATIVE, 2)
        )
        rows.append(f"{' '.join(words)},{'pos' if i % 2 else 'neg'}")
    (tmp / "reviews.csv").write_text("\n".join(rows) + "\n")
    data = {"path": "reviews.csv", "test": 0.2, "validation": 0.1}
    model = {"embedding_dim": 8, "hidden_size": 8, "pooling": "attention"}
    train_run(
        write_run_config(tmp, "classify", data, model, {"epochs": 3, "batch_size": 16}), log=lambda _: None
    )
    server = Server(tmp / "run" / "bundle", max_batch=4, max_length=200, max_body_bytes=4000)
    yield server
    server.close()


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    (tmp / "corpus.txt").write_text("the cat sat on the mat.\n" * 200)
    data = {"path": "corpus.txt", "level": "char", "seq_len": 16, "test": 0.1, "validation": 0.1}
    data |= {"eval_rows": 2, "cache_dir": str(tmp / "cache")}
    model = {"embedding_dim": 8, "hidden_size": 16}
    train_run(
        write_run_config(tmp, "language_model", data, model, {"epochs": 2, "batch_size": 8}),
        log=lambda _: None,
    )
    server = Server(tmp / "run" / "bundle", max_tokens=40, max_sessions=2, session_ttl_s=1.5)
    yield server
    server.close()


def test_health_model_and_schema(classifier):
    assert classifier.client.get("/healthz").json() == {"status": "ok"}
    described = classifier.client.get("/v1/model").json()
    assert described["task"] == "classify" and "predict" in described["verbs"]
    paths = classifier.client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/forecast", "/v1/generate", "/v1/sessions", "/healthz"} <= set(paths)


def test_predict_labels_texts_as_the_predictor_does(classifier):
    texts = ["the film was great good", "a plot bad awful"]
    answer = classifier.client.post("/v1/predict", json={"inputs": texts})
    assert answer.status_code == 200
    outputs = answer.json()["outputs"]
    local = rnnkit.load(classifier.server.config.app.state.predictor.bundle.path).predict(texts)
    assert [o["label"] for o in outputs] == [o["label"] for o in local]
    assert outputs[0]["probability"] == pytest.approx(local[0]["probability"], abs=1e-6)


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"inputs": ["good"], "colour": "red"}, 422, "colour: unknown field"),
        ({"texts": ["good"]}, 422, "inputs: Field required"),
        ({"inputs": []}, 422, "inputs is empty"),
        ({"inputs": ["good"] * 5}, 422, r"5 inputs are above this server's limit \(max_batch 4\)"),
        (
            {"inputs": ["good " * 50]},
            422,
            r"inputs\[0\] has 250 characters, above this server's limit \(200\)",
        ),
        ({"inputs": [[1.0, float("nan")]]}, 422, r"inputs\[0\] holds NaN or infinity"),
        ({"inputs": [{"text": "good"}]}, 422, r"inputs\[0\] must be a text or a list of numbers, got dict"),
        ({"inputs": ["good"], "options": {"beam_width": 3}}, 400, "a classifier's predict takes no options"),
        ({"inputs": [[1.0, 2.0]]}, 422, ""),  # numbers for a text model: the predictor's own error
    ],
)
def test_bad_predict_requests_get_their_4xx_and_a_message(classifier, body, status, message):
    answer = classifier.client.post(
        "/v1/predict", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]
    assert message == "" or __import__("re").search(message, answer.json()["detail"]), answer.json()["detail"]


def test_malformed_json_a_large_body_and_a_verb_the_model_lacks(classifier):
    broken = classifier.client.post(
        "/v1/predict", content=b'{"inputs": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
    large = classifier.client.post("/v1/predict", json={"inputs": ["good " * 2000]})
    assert (
        large.status_code == 413 and "larger than this server's limit (4000 bytes)" in large.json()["detail"]
    )
    chunked = classifier.client.post("/v1/predict", content=iter([b'{"inputs": ["', b"x" * 5000, b'"]}']))
    assert chunked.status_code == 413  # no declared length: counted as it arrives
    forecast = classifier.client.post("/v1/forecast", json={"data": [{"value": 1.0}]})
    assert forecast.status_code == 404 and "a classify model does not forecast" in forecast.json()["detail"]
    assert classifier.client.post("/v1/generate", json={"prompt": "a"}).status_code == 404
    assert classifier.client.get("/healthz").json() == {"status": "ok"}  # still answering


def test_a_model_call_past_the_time_limit_is_503(classifier, tmp_path):
    slow = Server(classifier.server.config.app.state.predictor.bundle.path, timeout_s=1e-4)
    try:
        answer = slow.client.post("/v1/predict", json={"inputs": ["good film"] * 50})
        assert answer.status_code == 503 and "longer than this server's limit" in answer.json()["detail"]
    finally:
        slow.close()


def test_generate_once_and_as_server_sent_events_give_the_same_text(language_model):
    body = {"prompt": "the c", "max_tokens": 20, "seed": 3, "temperature": 0.8}
    whole = language_model.client.post("/v1/generate", json=body).json()["text"]
    pieces, ended = [], False
    with language_model.client.stream("POST", "/v1/generate", json={**body, "stream": True}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("data: ") and not ended:
                data = json.loads(line[6:])
                if data:
                    pieces.append(data["text"])
            ended |= line == "event: end"
    assert ended and len(pieces) > 1
    assert "the c" + "".join(pieces) == whole


def test_generate_limits(language_model):
    too_many = language_model.client.post("/v1/generate", json={"prompt": "the", "max_tokens": 41})
    assert too_many.status_code == 422 and "above this server's limit 40" in too_many.json()["detail"]
    beam = language_model.client.post("/v1/generate", json={"prompt": "the", "beam_width": 2, "stream": True})
    assert beam.status_code == 400, beam.text
    bad = language_model.client.post("/v1/generate", json={"prompt": "the", "temperature": 0})
    assert bad.status_code == 422 and "temperature" in bad.json()["detail"]
    assert language_model.client.post("/v1/predict", json={"inputs": ["x"]}).status_code == 404


def test_a_session_fed_in_pieces_answers_as_one_read_of_the_whole(language_model):
    client = language_model.client
    pieces = client.post("/v1/sessions").json()["id"]
    whole = client.post("/v1/sessions").json()["id"]
    client.post(f"/v1/sessions/{pieces}/steps", json={"text": "the c"})
    stepped = client.post(f"/v1/sessions/{pieces}/steps", json={"text": "at s"}).json()
    once = client.post(f"/v1/sessions/{whole}/steps", json={"text": "the cat s"}).json()
    assert stepped["tokens_read"] == once["tokens_read"] == 9
    assert [n["token"] for n in stepped["next"]] == [n["token"] for n in once["next"]]
    for a, b in zip(stepped["next"], once["next"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)
    full = client.post("/v1/sessions")
    assert full.status_code == 429 and "max_sessions" in full.json()["detail"]
    assert client.delete(f"/v1/sessions/{whole}").status_code == 204
    assert client.post(f"/v1/sessions/{whole}/steps", json={"text": "a"}).status_code == 404
    assert client.delete(f"/v1/sessions/{whole}").status_code == 404
    assert client.post("/v1/sessions/nope/steps", json={"text": "a"}).status_code == 404
    neither = client.post(f"/v1/sessions/{pieces}/steps", json={})
    assert neither.status_code == 422 and "give text" in neither.json()["detail"]
    time.sleep(1.6)  # session_ttl_s=1.5: the idle session expires
    expired = client.post(f"/v1/sessions/{pieces}/steps", json={"text": "a"})
    assert expired.status_code == 404 and "expired" in expired.json()["detail"]


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forecaster")
    days = np.arange(150)
    rows = ["date,value"] + [f"2024-01-01,{0}" for _ in []]
    dates = np.datetime64("2024-01-01") + days
    rows += [f"{d},{math.sin(0.4 * i):.5f}" for i, d in enumerate(dates)]
    (tmp / "series.csv").write_text("\n".join(rows) + "\n")
    data = {
        "path": "series.csv",
        "time_column": "date",
        "lookback": 8,
        "horizon": 3,
        "test": 0.2,
        "validation": 0.1,
    }
    train_run(
        write_run_config(tmp, "forecast", data, {"hidden_size": 8}, {"epochs": 2, "batch_size": 16}),
        log=lambda _: None,
    )
    server = Server(tmp / "run" / "bundle", max_length=100)
    yield server, [{"date": str(d), "value": math.sin(0.4 * i)} for i, d in enumerate(dates[:40])]
    server.close()


def test_forecast_answers_rows_as_the_predictor_does(forecaster):
    server, history = forecaster
    answer = server.client.post("/v1/forecast", json={"data": history, "horizon": 3})
    assert answer.status_code == 200, answer.text
    rows = answer.json()["forecast"]
    local = rnnkit.load(server.server.config.app.state.predictor.bundle.path)
    import pandas as pd

    expected = local.forecast(pd.DataFrame.from_records(history), 3)
    assert len(rows) == 3 and [r["value"] for r in rows] == pytest.approx(
        expected["value"].tolist(), abs=1e-6
    )
    bad = [{**row} for row in history]
    bad[5]["value"] = float("nan")
    nan = server.client.post(
        "/v1/forecast", content=json.dumps({"data": bad}), headers={"content-type": "application/json"}
    )
    assert nan.status_code == 422 and "data[5].value is nan" in nan.json()["detail"]
    long = server.client.post("/v1/forecast", json={"data": history * 3})
    assert long.status_code == 422 and "1 to 100 rows" in long.json()["detail"]
    unknown = server.client.post("/v1/forecast", json={"data": [{"dat": "2024-01-01", "value": 1.0}] * 20})
    assert unknown.status_code == 422 and unknown.json()["detail"]


def test_a_forecaster_session_fed_rows_answers_as_a_forecast_of_all_of_them(forecaster):
    server, history = forecaster
    client = server.client
    key = client.post("/v1/sessions").json()["id"]
    first = client.post(f"/v1/sessions/{key}/steps", json={"rows": history[:7]})
    assert first.status_code == 200 and first.json() == {"forecast": None}  # lookback 8: too few yet
    for start in range(7, len(history), 7):
        stepped = client.post(f"/v1/sessions/{key}/steps", json={"rows": history[start : start + 7]}).json()
    once = client.post("/v1/forecast", json={"data": history}).json()["forecast"]
    assert stepped["forecast"] == [pytest.approx(row, abs=1e-6) for row in once]
    late = client.post(f"/v1/sessions/{key}/steps", json={"rows": history[:1]})
    assert late.status_code == 422 and "not in time order" in late.json()["detail"]
    nan = client.post(
        f"/v1/sessions/{key}/steps",
        content=json.dumps({"rows": [{"date": "2030-01-01", "value": float("nan")}]}),
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422 and "rows[0].value is nan" in nan.json()["detail"]
    both = client.post(f"/v1/sessions/{key}/steps", json={"rows": history[:1], "text": "a"})
    assert both.status_code == 422 and "one of them" in both.json()["detail"]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Selenium through Debian's chromedriver (make test
    installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def _open(browser, server, section: str):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"http://127.0.0.1:{server.port}/")
    WebDriverWait(browser, 20).until(lambda b: b.find_element("tag name", "body").get_attribute("data-ready"))
    assert browser.find_element("tag name", "body").get_attribute("data-ready") == section
    return WebDriverWait(browser, 30)


def test_the_page_labels_a_text_and_shades_its_words(browser, classifier):
    wait = _open(browser, classifier, "classify")
    box = browser.find_element("id", "text")
    box.clear()
    box.send_keys("the film was great good")
    browser.find_element("id", "label-button").click()
    wait.until(lambda b: b.find_elements("css selector", "#words .token"))
    expected = classifier.client.post("/v1/explain", json={"text": "the film was great good"}).json()
    assert browser.find_element("id", "label").text.startswith(expected["label"])
    words = browser.find_elements("css selector", "#words .token")
    assert [w.text.strip() for w in words] == expected["tokens"]
    shades = [w.value_of_css_property("background-color") for w in words]
    assert len(set(shades)) > 1  # attention weights differ from word to word
    assert browser.find_element("id", "error").text == ""


def test_the_page_plots_a_forecast_from_a_pasted_csv(browser, forecaster):
    server, history = forecaster
    wait = _open(browser, server, "forecast")
    csv = "date,value\n" + "\n".join(f"{row['date']},{row['value']:.5f}" for row in history)
    browser.execute_script("document.getElementById('csv').value = arguments[0];", csv)
    browser.find_element("id", "forecast-button").click()
    wait.until(lambda b: b.find_elements("id", "forecast-line"))
    rows = browser.find_elements("css selector", "#forecast-table tr")
    assert len(rows) == 1 + 3  # the header and the model's horizon
    assert browser.find_element("id", "error").text == ""
    browser.execute_script("document.getElementById('csv').value = 'date,value';")
    browser.find_element("id", "forecast-button").click()
    wait.until(lambda b: b.find_element("id", "error").text)
    assert "header line and at least one row" in browser.find_element("id", "error").text


def test_the_page_shows_generated_text_as_it_arrives(browser, language_model):
    wait = _open(browser, language_model, "generate")
    box = browser.find_element("id", "prompt")
    box.clear()
    box.send_keys("the c")
    browser.find_element("id", "seed").send_keys("3")  # the seed of the server-sent events test
    browser.find_element("id", "generate-button").click()

    def finished(b):
        return (
            b.find_element("id", "generated").get_attribute("data-done") or b.find_element("id", "error").text
        )

    wait.until(finished)
    text = browser.find_element("id", "generated").text
    expected = language_model.client.post("/v1/generate", json={"prompt": "the c", "seed": 3}).json()["text"]
    assert text.split() == expected.split() and len(text) > len("the c") + 5  # as the page shows white space
    assert browser.find_element("id", "error").text == ""


def test_a_classifier_session_labels_the_text_so_far_as_predict_labels_it_whole(classifier):
    client = classifier.client
    session = client.post("/v1/sessions")
    assert session.status_code == 201, session.text
    key = session.json()["id"]
    client.post(f"/v1/sessions/{key}/steps", json={"text": "the film was "})
    stepped = client.post(f"/v1/sessions/{key}/steps", json={"text": "great good"}).json()
    [whole] = client.post("/v1/predict", json={"inputs": ["the film was great good"]}).json()["outputs"]
    assert stepped["text"] == whole["text"] and stepped["label"] == whole["label"]
    assert stepped["tokens_read"] == 5
    for name, p in whole["probabilities"].items():
        assert stepped["probabilities"][name] == pytest.approx(p, abs=1e-5)
    assert client.delete(f"/v1/sessions/{key}").status_code == 204
