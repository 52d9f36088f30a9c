"""`seqkit serve`: the API through FastAPI's test client (every bad input, the TensorFlow
Serving shapes), and a real uvicorn process on 127.0.0.1 (concurrent clients, a client
that goes away mid-stream)."""

import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from seqkit.decode import CharLM, Sampler, beam_search, generate, prediction_tree, score
from seqkit.decode.export import ServingModule
from seqkit.serve.app import Limits, create_app
from seqkit.text.train_char import char_config, train_char

SENTENCE = "the quick brown fox jumps over the lazy dog. "


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    (root / "corpus.txt").write_text(SENTENCE * 80, encoding="utf-8")
    config = char_config(embedding=8, layers=2, units=32, seq_len=16, batch_size=8, epochs=3, lr=1e-2, seed=1)
    train_char(root / "corpus.txt", root / "tiny", config, verbose=False)
    return root / "tiny"


@pytest.fixture(scope="module")
def lm(model_dir):
    return CharLM.load(model_dir)


LIMITS = Limits(max_body=4096, max_prime=200, max_length=500, max_samples=8, max_tree=200, max_concurrent=64)


@pytest.fixture(scope="module")
def client(lm):
    with TestClient(create_app(lm, "tiny", LIMITS)) as client:
        yield client


def test_healthz_and_the_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and '<svg id="tree"' in page.text and "tiny" in page.text
    for asset, kind in (("app.js", "javascript"), ("style.css", "css")):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/docs").status_code == 200  # FastAPI's OpenAPI page


def test_tensorflow_serving_status_and_metadata(client, lm):
    status = client.get("/v1/models/tiny").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = client.get("/v1/models/tiny/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(signature["outputs"]) == {"probabilities", "chars"} and "texts" in signature["inputs"]
    assert client.get("/v1/models/other").status_code == 404


def test_predict_gives_the_savedmodels_numbers_per_instance(client, lm):
    texts = ["the qu", "lazy d", ""]
    module = ServingModule(lm)  # held: a tf.function method keeps only a weak reference
    expected = module.next_char(tf.constant(texts))
    rows = client.post("/v1/models/tiny:predict", json={"instances": texts}).json()["predictions"]
    assert len(rows) == 3 and all(row["chars"][1:] == lm.vocab.chars for row in rows)
    np.testing.assert_allclose([row["probabilities"] for row in rows], expected["probabilities"].numpy(), atol=1e-6)
    rows = client.post("/v1/models/tiny:predict", json={"instances": [{"texts": t} for t in texts]}).json()
    assert len(rows["predictions"]) == 3
    columns = client.post("/v1/models/tiny:predict", json={"inputs": {"texts": texts}}).json()["outputs"]
    np.testing.assert_allclose(columns["probabilities"], expected["probabilities"].numpy(), atol=1e-6)


def test_generate_is_the_engine_of_the_api(client, lm):
    body = {"prime": "the ", "length": 40, "seed": 5, "temperature": 0.9}
    one = client.post("/v1/generate", json=body).json()["samples"]
    assert len(one) == 1 and len(one[0]["text"]) == 40
    alone = generate(lm, [lm.encode_prime("the ")], 40, Sampler(0.9), seed=5)[0]
    assert one[0]["text"] == alone.text and one[0]["log_prob"] == pytest.approx(alone.log_prob, abs=1e-3)
    many = client.post("/v1/generate", json={**body, "num_samples": 4, "stop": ["."]}).json()["samples"]
    assert len(many) == 4 and all("." not in s["text"] for s in many)
    beams = client.post("/v1/generate", json={"prime": "the lazy ", "length": 5, "beam": 3}).json()["beams"]
    expected = beam_search(lm, lm.encode_prime("the lazy "), 3, 5)
    assert [b["text"] for b in beams] == [b.text for b in expected]


def test_a_streamed_sample_is_the_sample(client):
    body = {"prime": "a ", "length": 60, "seed": 2, "stop": ["dog"]}
    whole = client.post("/v1/generate", json=body).json()["samples"][0]
    with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.read().decode().strip().split("\n\n")
    pieces = [json.loads(e.split("data: ", 1)[1])["text"] for e in events if e.startswith("data: ")]
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert events[-1].startswith("event: done") and done["samples"][0] == whole
    assert "".join(pieces) == whole["text"]


def test_tree_and_score(client, lm):
    tree = client.post("/v1/tree", json={"prime": "the quick b", "width": 3, "depth": 2}).json()["tree"]
    expected = prediction_tree(lm, lm.encode_prime("the quick b"), 3, 2)
    assert [n["char"] for n in tree] == [n.char for n in expected]
    assert tree[0]["prob"] == pytest.approx(expected[0].prob, rel=1e-5) and len(tree[0]["children"]) == 3
    cut = client.post("/v1/tree", json={"prime": "the quick b", "width": 10, "depth": 2, "mass": 0.5}).json()["tree"]
    held = sum(n["prob"] for n in cut)
    assert held >= 0.5 and held - cut[-1]["prob"] < 0.5  # the fewest that hold the mass
    scored, expected = client.post("/v1/score", json={"text": "the lazy dog"}).json(), score(lm, "the lazy dog")
    assert scored["bits_per_char"] == pytest.approx(expected["bits_per_char"], rel=1e-5)
    assert [row["char"] for row in scored["surprisal_bits"]] == list("he lazy dog")


BAD = [
    ("/v1/generate", "{not json", 400, "not valid JSON"),
    ("/v1/generate", {"length": "long"}, 422, "length"),
    ("/v1/generate", {"temperature": 0}, 422, "temperature"),
    ("/v1/generate", {"top_p": 2}, 422, "top_p"),
    ("/v1/generate", {"num_samples": 0}, 422, "num_samples"),
    ("/v1/generate", {"colour": "red"}, 422, "colour"),
    ("/v1/generate", {"prime": "ZEBRA"}, 400, "never saw"),
    ("/v1/generate", {"stop": [""]}, 400, "must not be empty"),
    ("/v1/generate", {"stop": ["Z"]}, 400, "could never match"),
    ("/v1/generate", {"length": 501}, 413, "length is more than 500"),
    ("/v1/generate", {"num_samples": 9}, 413, "num_samples is more than 8"),
    ("/v1/generate", {"prime": "the " * 60}, 413, "longer than 200"),
    ("/v1/generate", {"beam": 40}, 413, "beam is more than"),
    ("/v1/tree", {"width": 10, "depth": 5}, 413, "over 200 nodes"),
    ("/v1/tree", {"width": 0}, 422, "width"),
    ("/v1/score", {}, 422, "text"),
    ("/v1/score", {"text": "x"}, 400, "at least two characters"),
    ("/v1/models/tiny:predict", {}, 400, "instances"),
    ("/v1/models/tiny:predict", {"instances": [1, 2]}, 400, "Each instance is a text"),
    ("/v1/models/tiny:predict", {"instances": ["ZZ"]}, 400, "never saw"),
    ("/v1/models/tiny:predict", {"instances": ["a"], "signature_name": "sample"}, 400, "serving_default"),
    ("/v1/models/nope:predict", {"instances": ["a"]}, 404, "No model named"),
]


@pytest.mark.parametrize("path, body, status, says", BAD, ids=[f"{p} {s} {w}" for p, _, s, w in BAD])
def test_bad_input_is_a_4xx_with_one_sentence_and_the_server_goes_on(client, path, body, status, says):
    if isinstance(body, str):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error and error.endswith(".") and "\n" not in error and "Traceback" not in error
    assert client.get("/healthz").status_code == 200


def test_a_body_over_the_limit_is_refused_unread(client):
    big = json.dumps({"prime": "a" * (10 << 20)})
    response = client.post("/v1/generate", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "larger than 4,096 bytes" in response.json()["error"]


def test_requests_over_the_concurrency_limit_get_429_with_retry_after(lm):
    with TestClient(create_app(lm, "tiny", Limits(max_concurrent=1))) as client:
        started = threading.Event()

        def hold():
            with client.stream("POST", "/v1/generate", json={"length": 2000, "stream": True}) as response:
                started.set()
                for _ in response.iter_bytes():
                    pass

        holder = threading.Thread(target=hold)
        holder.start()
        assert started.wait(60)
        refused = client.post("/v1/tree", json={"prime": "the"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "Too many requests" in refused.json()["error"]
        holder.join(120)
        assert client.post("/v1/tree", json={"prime": "the"}).status_code == 200


# -- a real server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(model_dir):
    """``seqkit serve`` in its own process on 127.0.0.1, a free port; its base URL."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, "-m", "seqkit.cli", "serve", "--model", str(model_dir), "--port", "0", "--max-samples", "8"]
    args += ["--max-length", "1000000"]  # a stream that cannot end while a test looks at it
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    url, said = None, []
    deadline = time.monotonic() + 300
    while url is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        said.append(line)
        found = re.search(r"serving tiny at (http://127\.0\.0\.1:\d+/)", line)
        url = found.group(1) if found else None
    assert url, "".join(said)
    threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
    yield url
    process.terminate()
    process.wait(timeout=60)


def test_a_real_server_serves_concurrent_clients(server):
    import httpx

    results = []

    def client(seed):
        with httpx.Client(base_url=server, timeout=120) as http:
            response = http.post("/v1/generate", json={"prime": "the ", "length": 80, "seed": seed, "num_samples": 2})
            results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(results) == 12 and all(code == 200 for code, _ in results)
    assert all(len(s["text"]) == 80 for _, body in results for s in body["samples"])


def test_a_client_gone_mid_stream_frees_its_place(server):
    import httpx

    with httpx.Client(base_url=server, timeout=60) as http:
        body = {"length": 1_000_000, "stream": True, "num_samples": 8}  # minutes of work: it cannot end first
        with http.stream("POST", "/v1/generate", json=body) as response:
            chunks = response.iter_bytes()  # held: a dropped iterator closes the stream at once
            next(chunks)  # the first characters: its streams run
            assert http.get("/healthz").json()["streams"] == 8
        deadline = time.monotonic() + 30
        while http.get("/healthz").json()["streams"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert http.get("/healthz").json()["streams"] == 0


# -- the page in a real browser -----------------------------------------------------------------
def _browser():
    """Headless Chromium driven through the system's chromedriver (never a downloaded one)."""
    import shutil

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        why = "needs Debian's chromium and chromium-driver (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: it {why}")
        pytest.skip(f"the browser test {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


def test_the_page_grows_the_tree_as_you_type_and_streams_a_sample(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        from selenium.common.exceptions import StaleElementReferenceException

        wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
        browser.get(server)
        text = browser.find_element(By.ID, "text")
        text.send_keys("the quick b")

        def tree_after(prime):
            def ready(driver):
                nodes = driver.find_elements(By.CSS_SELECTOR, "#tree .node")
                return (
                    nodes
                    and driver.execute_script("return document.getElementById('text').value") == prime
                    and [n.get_attribute("data-path") for n in nodes]
                )

            return wait.until(ready)

        first = tree_after("the quick b")
        assert len(first) == 3 + 9 + 27  # width 3, depth 3
        node = browser.find_elements(By.CSS_SELECTOR, "#tree .node")[0]
        path = node.get_attribute("data-path")
        node.click()
        second = tree_after("the quick b" + path)
        assert second != first
        wait.until(lambda d: int(d.find_element(By.ID, "tree").get_attribute("data-nodes") or 0) == len(second))
        browser.find_elements(By.CSS_SELECTOR, "#tree .grow")[0].click()  # one level deeper
        wait.until(lambda d: int(d.find_element(By.ID, "tree").get_attribute("data-nodes")) > len(second))

        browser.find_element(By.ID, "sample-button").click()
        wait.until(lambda d: d.find_element(By.ID, "sample-output").get_attribute("data-done") == "true")
        assert len(browser.find_element(By.ID, "sample-text").text) > 0
        browser.find_element(By.ID, "beam-button").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#beams li")) == 5)
        browser.find_element(By.ID, "score-button").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#score-output span")) > 10)
        if os.environ.get("SEQKIT_SCREENSHOT"):
            browser.save_screenshot(os.environ["SEQKIT_SCREENSHOT"])
    finally:
        browser.quit()
