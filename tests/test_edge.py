"""Step models for devices: the LiteRT and ONNX files run in their own runtimes, in a
process where seqkit cannot be imported, and give seqkit's probabilities and greedy text;
quantized versions record how much they change the predictions; bad requests are one line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from seqkit.decode.lm import CharLM
from seqkit.errors import SeqkitError
from seqkit.text.train_char import char_config, train_char

TEXT = "abcab cba bca acb " * 60
STEPS = 300

RUN_WITHOUT_SEQKIT = """
import json, sys
sys.modules["seqkit"] = None  # the step model must not need seqkit
import numpy as np
folder, kind, ids, prime, length = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5])
meta = json.load(open(f"{folder}/model.json"))
chars = json.load(open(f"{folder}/vocab.json"))["chars"]
if kind == "litert":
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=f"{folder}/{meta['file']}")
    runner = interpreter.get_signature_runner(meta["signature"])
    def step(i, state):
        out = runner(char_id=np.array([i], np.int32), state=state)
        return out["probabilities"], out["new_state"]
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(f"{folder}/{meta['file']}", providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    def step(i, state):
        out = dict(zip(names, session.run(None, {"char_id": np.array([i], np.int32), "state": state})))
        return out["probabilities"], out["new_state"]
zeros = np.zeros(meta["inputs"]["state"]["shape"], np.float32)
state, probabilities = zeros, []
for i in ids:
    p, state = step(i, state)
    probabilities.append(p[0].tolist())
state, text = zeros, ""
for ch in prime:
    p, state = step(1 + chars.index(ch), state)
for _ in range(length):  # greedy: the likeliest id, never the unknown id 0
    i = 1 + int(np.argmax(p[0][1:]))
    text += chars[i - 1]
    p, state = step(i, state)
print(json.dumps({"probabilities": probabilities, "text": text}))
"""


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    config = char_config(
        embedding=8, layers=2, units=32, seq_len=16, batch_size=8, eval_every=30, epochs=3, lr=1e-2, warmup_steps=5
    )
    train_char(root / "corpus.txt", root / "model", config, verbose=False)
    return root / "model"


@pytest.mark.parametrize("kind", ["litert", "onnx"])
def test_the_step_model_runs_without_seqkit_and_matches_its_steps_and_greedy_text(model_dir, tmp_path, kind):
    out = tmp_path / kind
    exported = _cli("export", "--model", str(model_dir), "--out", str(out), "--format", kind)
    assert exported.returncode == 0, exported.stderr
    assert "Against float32 on" in exported.stdout  # measured on the run's held-out text
    lm = CharLM.load(model_dir)
    ids = lm.vocab.encode((TEXT * 2)[: STEPS + 7])[:STEPS]
    greedy = ["generate", "--model", str(model_dir), "--prime", "ab", "--length", "40", "--greedy"]
    greedy_float32 = _cli(*greedy, "--float32-weights")
    assert greedy_float32.returncode == 0, greedy_float32.stderr
    ran = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_SEQKIT, str(out), kind, json.dumps(ids.tolist()), "ab", "40"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    states = lm.encoder.get_initial_state(1)
    for t, row in enumerate(result["probabilities"]):
        log_probs, states = lm.step(ids[t : t + 1], states)
        np.testing.assert_allclose(row, np.exp(log_probs[0].numpy()), atol=1e-5, rtol=0)
    assert "ab" + result["text"] == greedy_float32.stdout.strip()
    described = json.loads((out / "model.json").read_text())
    assert described["inputs"]["state"]["shape"] == [1, 2 * 2 * 32]  # h and c of two layers
    assert [part["part"] for part in described["state_layout"]] == ["h", "c", "h", "c"]


def test_the_litert_step_has_no_loop_operators(model_dir):
    from seqkit.decode.edge import StepModule, _litert, op_names

    names = op_names(_litert(StepModule(CharLM.load(model_dir)), "none"))
    assert "FULLY_CONNECTED" in names and not [n for n in names if "WHILE" in n]


@pytest.mark.parametrize("quantize", ["float16", "dynamic-int8"])
def test_quantized_models_are_smaller_and_record_their_prediction_change(model_dir, tmp_path, quantize):
    from seqkit.decode.edge import export_step

    text = tmp_path / "eval.txt"
    text.write_text("bca acb abcab " * 20, encoding="utf-8")
    plain = export_step(model_dir, tmp_path / "plain", "litert")
    small = export_step(model_dir, tmp_path / quantize, "litert", quantize, eval_text=text)
    assert small["size_bytes"] < plain["size_bytes"]
    change = json.loads((tmp_path / quantize / "model.json").read_text())["prediction_change"]
    assert change["text"] == str(text) and change["characters"] == 20 * 14 - 1
    assert 0 <= change["kl_nats_per_char"] < 0.01
    assert abs(change["bits_per_char"] - change["bits_per_char_float32"]) < 0.05


def test_a_bidirectional_model_has_no_step_to_export(tmp_path):
    import keras

    from seqkit.core import SequenceEncoder
    from seqkit.decode.edge import export_step
    from seqkit.text.char_model import CharModelConfig
    from seqkit.text.run_folder import RunFolder
    from seqkit.text.vocab import Vocabulary, codepoints

    vocab = Vocabulary.from_points(codepoints("abc "))
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(vocab.size, 8, name="embedding")(ids)
    x = SequenceEncoder(16, bidirectional=True, return_sequences=True, name="encoder")(x)
    model = keras.Model(ids, keras.layers.Dense(vocab.size, name="logits")(x))
    run = RunFolder(tmp_path / "run")
    run.check_writable()
    run.write_config(CharModelConfig(vocab_size=vocab.size, layers=1, units=16).to_dict(), {}, vocab)
    model.save(run / "model.keras")
    with pytest.raises(SeqkitError, match="A bidirectional model reads each sequence from both ends"):
        export_step(run.path, tmp_path / "out", "litert")
    assert not (tmp_path / "out").exists()
    catalogue = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert "| `A bidirectional model reads each sequence from both ends, so it has no step to export: " in catalogue


def test_a_folder_that_is_not_empty_is_refused_untouched(model_dir, tmp_path):
    from seqkit.decode.edge import export_step

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(SeqkitError, match="exists and is not empty: choose a new `out_dir`"):
        export_step(model_dir, tmp_path / "out", "onnx")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
