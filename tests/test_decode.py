"""Decoding a small trained model: agreement with the full model, beam search, tree, CLI."""

import itertools
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from seqkit.core import native
from seqkit.decode import beam_search, prediction_tree, sample, score
from seqkit.decode.lm import CharLM
from seqkit.decode.sampling import Sampler, filter_logits
from seqkit.errors import SeqkitError
from seqkit.machine import cpu_has_f16c
from seqkit.text.char_model import CharModelConfig, build_char_model
from seqkit.text.train_char import char_config, train_char
from seqkit.text.vocab import Vocabulary


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model trained on a small alphabet, so exhaustive search stays small."""
    root = tmp_path_factory.mktemp("decode")
    (root / "corpus.txt").write_text("abcab cba bca acb " * 60, encoding="utf-8")
    config = char_config(
        embedding=8, layers=2, units=24, seq_len=16, batch_size=8, eval_every=30, epochs=3, lr=1e-2, warmup_steps=5
    )
    train_char(root / "corpus.txt", root / "model", config, verbose=False)
    return root / "model"


@pytest.fixture(scope="module")
def lm(model_dir):
    return CharLM.load(model_dir)


def test_step_by_step_equals_the_full_sequence(lm):
    ids = lm.vocab.encode("abc cab bac")
    full = tf.nn.log_softmax(lm.model(ids[None, :], training=False)[0]).numpy()
    log_probs, states = lm.prime(ids[:3])
    np.testing.assert_allclose(log_probs[0], full[2], atol=1e-5)
    for t in range(3, len(ids)):
        log_probs, states = lm.step(ids[t : t + 1], states)
        np.testing.assert_allclose(log_probs[0], full[t], atol=1e-5)


def _exhaustive(lm, prime_ids, length):
    usable = range(1, lm.vocab.size)  # the unknown id 0 is never generated
    scored = []
    for seq in itertools.product(usable, repeat=length):
        ids = np.concatenate([prime_ids, np.asarray(seq, np.int32)])
        scored.append((float(lm.log_probs(ids)[len(prime_ids) - 1 :].sum()), lm.vocab.decode(seq)))
    return sorted(scored, reverse=True)


def test_a_wide_enough_beam_is_exhaustive_search(lm):
    prime = lm.encode_prime("ab")
    exhaustive = _exhaustive(lm, prime, 3)
    beams = beam_search(lm, prime, width=len(exhaustive), length=3)
    assert len(beams) == len(exhaustive)
    for beam, (log_prob, text) in zip(beams[:10], exhaustive[:10]):
        assert beam.text == text
        assert beam.log_prob == pytest.approx(log_prob, abs=1e-4)


def test_beam_scores_are_the_sequences_log_probs_and_sorted(lm):
    prime = lm.encode_prime("ca")
    beams = beam_search(lm, prime, width=4, length=6)
    assert [b.log_prob for b in beams] == sorted((b.log_prob for b in beams), reverse=True)
    for beam in beams:
        ids = np.concatenate([prime, lm.vocab.encode(beam.text)])
        assert beam.log_prob == pytest.approx(float(lm.log_probs(ids)[len(prime) - 1 :].sum()), abs=1e-4)
        assert beam.per_char == pytest.approx(beam.log_prob / 6)


def test_beam_one_is_greedy(lm):
    prime = lm.encode_prime("b")
    greedy = sample(lm, prime, 12, Sampler(greedy=True))
    assert beam_search(lm, prime, width=1, length=12)[0].text == greedy


@pytest.mark.parametrize("prime_text", ["q", "the quick brown fox j"])  # one padding bucket, then the next
def test_sampling_continues_from_the_state_after_the_prime(prime_text):
    # The sampling loop runs the prime step by step inside itself; beam search runs it as one
    # sequence. An untrained model, whose predictions (unlike the tiny trained one's) depend
    # on every character of the prime.
    untrained = _untrained_lm(32)
    prime = untrained.encode_prime(prime_text)
    assert sample(untrained, prime, 30, Sampler(greedy=True)) == beam_search(untrained, prime, 1, 30)[0].text


def _untrained_lm(units: int, native_step: bool | None = None, half_weights: bool | None = None) -> CharLM:
    keras.utils.set_random_seed(3)
    vocab = Vocabulary.from_points(np.arange(ord(" "), ord("z") + 1))
    return CharLM(build_char_model(CharModelConfig(vocab.size, 16, "lstm", 2, units)), vocab, native_step, half_weights)


def test_the_native_step_with_float32_weights_samples_what_xla_samples():
    native_lm = _untrained_lm(32, half_weights=False)
    xla_lm = CharLM(native_lm.model, native_lm.vocab, native_step=False)
    prime = native_lm.encode_prime("the quick")
    for sampler in (Sampler(), Sampler(temperature=0.7, top_p=0.9)):
        assert sample(native_lm, prime, 60, sampler, seed=5) == sample(xla_lm, prime, 60, sampler, seed=5)
    assert native_lm.native_step == native.available(native.STEP)


@pytest.mark.parametrize("bf16_cpu", [False, True])
def test_half_weights_are_the_default_where_the_native_step_can_take_them_and_they_pay(bf16_cpu, monkeypatch):
    """By a fixed rule from the CPU's features: float16 where the CPU converts it and has
    no bf16 dot products (on the CPUs measured, those gained; one with them lost)."""
    from seqkit import machine

    monkeypatch.setattr(machine, "cpu_has_bf16", lambda: bf16_cpu)
    lm = _untrained_lm(32)
    assert len(sample(lm, lm.encode_prime("a"), 5, Sampler())) == 5
    assert lm.half_weights == (native.available(native.STEP) and cpu_has_f16c() and not bf16_cpu)
    narrow = _untrained_lm(24)  # no native step: float32, and no error
    assert len(sample(narrow, narrow.encode_prime("a"), 5, Sampler())) == 5 and narrow.half_weights is False


@pytest.mark.skipif(not native.available(native.STEP) or not cpu_has_f16c(), reason="no native step with float16 here")
def test_half_weights_refuse_a_weight_float16_cannot_hold():
    lm = _untrained_lm(32)
    kernel = lm.encoder.cells[0].kernel
    kernel.assign(tf.tensor_scatter_nd_update(kernel, [[0, 0]], [1e5]))
    with pytest.raises(SeqkitError, match="A weight of 100000 does not fit in float16"):
        sample(CharLM(lm.model, lm.vocab, half_weights=True), lm.encode_prime("a"), 5, Sampler())
    assert len(sample(lm, lm.encode_prime("a"), 5, Sampler())) == 5 and lm.half_weights is False  # by default


def test_a_native_step_asked_for_a_layer_it_cannot_run_is_a_user_error():
    lm = _untrained_lm(24, native_step=True)
    with pytest.raises(SeqkitError, match="native decoding step"):
        sample(lm, lm.encode_prime("a"), 5, Sampler())


def test_sampling_is_reproducible_with_a_seed(lm):
    prime = lm.encode_prime("a")
    sampler = Sampler(temperature=1.3, top_k=3)
    first = sample(lm, prime, 40, sampler, seed=7)
    assert sample(lm, prime, 40, sampler, seed=7) == first and len(first) == 40
    assert any(sample(lm, prime, 40, sampler, seed=s) != first for s in range(8, 12))


def test_the_tree_holds_conditional_and_path_probabilities(lm):
    prime = lm.encode_prime("abc")
    roots = prediction_tree(lm, prime, width=3, depth=2)
    log_probs, _ = lm.prime(prime)
    probs = np.exp(log_probs[0].numpy())
    assert [r.prob for r in roots] == sorted((r.prob for r in roots), reverse=True)
    assert roots[0].prob == pytest.approx(probs[1:].max(), rel=1e-5)
    for root in roots:
        assert len(root.children) == 3
        for child in root.children:
            assert child.path_prob == pytest.approx(root.prob * child.prob, rel=1e-5)
            ids = np.concatenate([prime, lm.vocab.encode(root.char + child.char)])
            assert math.log(child.path_prob) == pytest.approx(float(lm.log_probs(ids)[-2:].sum()), abs=1e-4)


def test_score_reports_consistent_figures(lm):
    result = score(lm, "abc cab")
    assert result["characters_scored"] == 6
    assert result["nats_per_char"] == pytest.approx(-result["log_prob_nats"] / 6)
    assert result["perplexity"] == pytest.approx(math.exp(result["nats_per_char"]))
    assert sum(r["bits"] for r in result["surprisal_bits"]) == pytest.approx(
        -result["log_prob_nats"] / math.log(2), rel=1e-5
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-20, 20), min_size=3, max_size=12),
    st.floats(0.1, 3.0),
    st.integers(0, 12),
    st.floats(0.01, 1.0),
)
def test_filtering_keeps_a_valid_distribution(logits, temperature, top_k, top_p):
    filtered = filter_logits(tf.constant([logits], tf.float32), temperature, top_k, top_p).numpy()[0]
    kept = np.isfinite(filtered)
    assert not kept[0]  # the unknown id is never drawn
    assert kept.sum() >= 1
    if top_k:
        assert (
            kept.sum() <= max(top_k, 1) or len(set(np.asarray(logits, np.float32)[kept])) < kept.sum()
        )  # ties, as float32 sees them
    probs = tf.nn.softmax(filtered).numpy()
    assert probs.sum() == pytest.approx(1.0, abs=1e-5) and (probs >= 0).all()
    best = int(np.argmax(np.asarray(logits)[1:])) + 1
    assert kept[best]  # the likeliest usable id survives every filter


@pytest.mark.parametrize(
    "sampler_args",
    [{"temperature": 0}, {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -1}],
)
def test_impossible_sampler_settings_are_user_errors(sampler_args):
    with pytest.raises(SeqkitError):
        Sampler(**sampler_args)


def test_length_beam_and_width_below_one_are_user_errors(lm):
    prime = lm.encode_prime("a")
    with pytest.raises(SeqkitError):
        sample(lm, prime, 0, Sampler())
    with pytest.raises(SeqkitError):
        beam_search(lm, prime, width=0, length=3)
    with pytest.raises(SeqkitError):
        prediction_tree(lm, prime, width=0, depth=2)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ},
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prime", "xyz"], 'never saw: "x", "y", "z"; remove them or pass --drop-unknown'),
        (["--beam", "0"], "--beam must be at least 1"),
        (["--temperature", "0"], "use --greedy"),
        (["--length", "0"], "--length must be at least 1"),
        (["--top-p", "2"], "--top-p must be in (0, 1]"),
        (["--half-weights"], "Half-precision weights are for the native decoding step"),  # 24 units
    ],
)
def test_generate_bad_input_is_one_line(model_dir, args, message):
    result = _cli("generate", "--model", str(model_dir), *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_generate_cli_modes_and_missing_model(model_dir, tmp_path):
    picture = tmp_path / "tree.svg"
    result = _cli(
        "generate",
        "--model",
        str(model_dir),
        "--prime",
        "ab",
        "--tree",
        "--width",
        "99",
        "--depth",
        "2",
        "--json",
        "--plot",
        str(picture),
    )
    assert result.returncode == 0 and '"path_prob"' in result.stdout and "using" in result.stderr
    assert picture.read_text().lstrip().startswith("<?xml") and "<svg" in picture.read_text()
    result = _cli("generate", "--model", str(model_dir), "--prime", "ab", "--beam", "2", "--length", "4")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 2
    result = _cli("generate", "--model", str(tmp_path))
    assert result.returncode == 1 and "holds no trained model" in result.stderr


LOAD_WITHOUT_SEQKIT = """
import json, sys
sys.modules["seqkit"] = None  # the SavedModel must not need seqkit
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
r = m.signatures["serving_default"](texts=tf.constant(["abc c", "ba"]))
s = m.signatures["sample"](prime=tf.constant("ab"), length=tf.constant(40), temperature=tf.constant(0.9),
                           seed=tf.constant(3, tf.int64), top_k=tf.constant(3), top_p=tf.constant(0.95))
print(json.dumps({"probabilities": r["probabilities"].numpy().tolist(),
                  "chars": [c.decode() for c in r["chars"].numpy()],
                  "text": s["text"].numpy().decode()}))
"""


def test_export_serves_the_same_distribution_without_seqkit(lm, model_dir, tmp_path):
    import json

    out = tmp_path / "saved"
    result = _cli("export", "--model", str(model_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_SEQKIT, str(out)], capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr
    served = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert served["chars"][1:] == lm.vocab.chars
    for row, text in zip(served["probabilities"], ["abc c", "ba"]):
        expected = np.exp(lm.prime(lm.encode_prime(text))[0][0].numpy())
        np.testing.assert_allclose(row, expected, atol=1e-5)
    # The same loop and sampler as generate's (with the cells' own step): the same text.
    xla_lm = CharLM(lm.model, lm.vocab, native_step=False)
    assert served["text"] == sample(xla_lm, lm.encode_prime("ab"), 40, Sampler(0.9, 3, 0.95), seed=3)
    again = _cli("export", "--model", str(model_dir), "--out", str(out))
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_score_cli_text_file_and_per_char(model_dir, tmp_path):
    import json

    result = _cli("score", "--model", str(model_dir), "abc cab", "--per-char", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["characters_scored"] == 6 and len(figures["surprisal_bits"]) == 6
    text_file = tmp_path / "t.txt"
    text_file.write_text("abc cab", encoding="utf-8")
    from_file = _cli("score", "--model", str(model_dir), "--file", str(text_file))
    assert from_file.returncode == 0 and "bits/char" in from_file.stdout and "perplexity" in from_file.stdout
    assert _cli("score", "--model", str(model_dir)).returncode == 2  # neither TEXT nor --file
    unknown = _cli("score", "--model", str(model_dir), "xyz abc")
    assert unknown.returncode == 1 and "never saw" in unknown.stderr


@pytest.mark.parametrize("damage", ["model.keras", "vocab.json", "config.json"])
def test_a_damaged_model_folder_is_one_line(model_dir, tmp_path, damage):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / damage).write_bytes(b"\x00garbage")
    result = _cli("generate", "--model", str(broken), "--prime", "ab", "--length", "5")
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr


def test_a_folder_without_model_keras_loads_its_best_checkpoint(lm, model_dir, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(model_dir, partial)
    (partial / "model.keras").unlink()  # as after an interrupted training
    restored = CharLM.load(partial)
    ids = lm.encode_prime("abc")
    np.testing.assert_allclose(restored.prime(ids)[0], lm.prime(ids)[0], atol=1e-6)
