"""Many streams at once: each stream of a batch is the stream alone, stop strings end each
stream where they should (across chunks too), the text shown as it comes is the text, and
the bad inputs end in one line."""

import os
import pty
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from seqkit.decode import CharLM, Sampler, beam_search, generate, prediction_tree, sample
from seqkit.decode import streams as streams_module
from seqkit.decode.sampling import draw, stream_keys, uniforms
from seqkit.errors import SeqkitError
from seqkit.text.char_model import CharModelConfig, build_char_model
from seqkit.text.train_char import char_config, train_char
from seqkit.text.vocab import Vocabulary

ALPHABET = "abc de\n"


def _lm(units=32, **options) -> CharLM:
    tf.keras.utils.set_random_seed(3)
    vocab = Vocabulary.from_points([ord(c) for c in sorted(ALPHABET)])
    model = build_char_model(CharModelConfig(vocab.size, 8, "lstm", 2, units))
    for weight in model.weights:  # a livelier distribution than the initial one
        weight.assign(weight * 3.0)
    return CharLM(model, vocab, **options)


@pytest.fixture(scope="module")
def lm():
    return _lm(half_weights=False)


def test_each_stream_of_a_batch_is_that_stream_alone(lm):
    prime = lm.encode_prime("ab")
    batch = generate(lm, [prime], 50, Sampler(0.9), seed=4, num_samples=5)
    assert [s.text for s in batch] == [sample(lm, prime, 50, Sampler(0.9), seed=4, stream=i) for i in range(5)]
    assert len({s.text for s in batch}) == 5
    wider = generate(lm, [prime], 50, Sampler(0.9), seed=4, num_samples=7)
    assert [s.text for s in wider[:5]] == [s.text for s in batch]  # more streams change no stream


def test_a_batch_on_the_matrix_step_gives_the_streams_alone_but_for_rounding(lm):
    """From NATIVE_STEP_ROWS streams on, each step is one matrix product for the batch;
    its rounding may differ from one row's, which can flip a rare draw."""
    prime = lm.encode_prime("a")
    rows = max(12, streams_module.NATIVE_STEP_ROWS)
    batch = generate(lm, [prime], 40, seed=8, num_samples=rows)
    same = sum(s.text == sample(lm, prime, 40, Sampler(), seed=8, stream=i) for i, s in enumerate(batch))
    assert same >= 0.75 * rows


def test_the_log_probability_is_the_untempered_models(lm):
    prime = lm.encode_prime("ab")
    (result,) = generate(lm, [prime], 30, Sampler(temperature=1.7), seed=2)
    ids = np.concatenate([prime, lm.vocab.encode(result.text)])
    expected = lm.log_probs(ids)[len(prime) - 1 :].sum()
    assert result.log_prob == pytest.approx(float(expected), abs=1e-3)


def test_stop_strings_end_each_stream_where_they_first_appear_also_across_chunks(lm):
    prime = lm.encode_prime("a")
    greedy = Sampler(greedy=True)
    full = generate(lm, [prime], 120, greedy)[0].text
    cut = streams_module.CHUNK - prime.size  # the first drawn character of the second chunk
    stop = full[cut - 2 : cut + 2]  # spans the chunk boundary
    first = full.find(stop)
    (ended,) = generate(lm, [prime], 120, greedy, stop=[stop])
    assert ended.text == full[:first] and ended.stop == stop
    (kept,) = generate(lm, [prime], 120, greedy, stop=[stop], include_stop=True)
    assert kept.text == full[: first + len(stop)]
    (shorter,) = generate(lm, [prime], 120, greedy, stop=["eeeeeeee", full[5:7]])
    assert shorter.text == full[: full.find(full[5:7])]


def test_per_prime_lengths_and_samplers(lm):
    primes = [lm.encode_prime(p) for p in ("a", "abc de", "d")]
    samplers = [Sampler(greedy=True), Sampler(0.5, top_k=2), Sampler(top_p=0.8)]
    results = generate(lm, primes, [5, 17, 33], samplers, seed=1)
    assert [len(r.text) for r in results] == [5, 17, 33]
    assert results[0].text == generate(lm, primes[:1], 5, Sampler(greedy=True))[0].text
    assert results[1].text == sample(lm, primes[1], 17, samplers[1], seed=1, stream=1)


def test_text_shown_as_it_comes_is_the_text(lm):
    prime = lm.encode_prime("b")
    pieces = {0: [], 1: []}
    shown = generate(lm, [prime], 100, seed=6, num_samples=2, stop=["ed"], on_text=lambda i, t: pieces[i].append(t))
    assert ["".join(pieces[i]) for i in (0, 1)] == [s.text for s in shown]
    whole = generate(lm, [prime], 100, seed=6, num_samples=2, stop=["ed"])
    assert [s.text for s in whole] == [s.text for s in shown]
    unchunked = generate(lm, [prime], 100, seed=6)  # one call of the loop
    chunked = generate(lm, [prime], 100, seed=6, on_text=lambda i, t: None)
    assert unchunked[0].text == chunked[0].text


def test_batched_draws_follow_the_models_distribution(lm):
    """The first character of 4,000 streams (each its own random stream) against the
    model's probabilities after the prime."""
    prime = lm.encode_prime("ab")
    expected = np.exp(lm.prime(prime)[0][0].numpy())
    expected[0] = 0.0  # the unknown id is never drawn
    expected /= expected.sum()
    firsts = [s.text[0] for s in generate(lm, [prime], 1, seed=9, num_samples=4000)]
    counts = np.bincount(lm.vocab.encode("".join(firsts)), minlength=lm.vocab.size)
    mean = expected * len(firsts)
    assert (np.abs(counts - mean) <= 5 * np.sqrt(mean + 1)).all(), (counts, mean)


def test_draws_follow_the_distribution_and_never_take_an_excluded_id():
    with np.errstate(divide="ignore"):
        logits = np.log([[0.0, 0.1, 0.0, 0.2, 0.3, 0.4, 0.0]], dtype=np.float32)  # log(0): -inf
    rows = 40_000
    u = uniforms(stream_keys(3, np.arange(rows)), np.zeros(rows, np.int32))
    ids = draw(tf.constant(np.repeat(logits, rows, 0)), u).numpy()
    counts = np.bincount(ids, minlength=logits.shape[1])
    assert counts[[0, 2, 6]].sum() == 0
    expected = np.exp(logits[0]) * rows
    assert (np.abs(counts - expected) <= 5 * np.sqrt(expected + 1)).all(), counts  # within 5 sigma


def test_beams_end_at_a_stop_string_and_the_tree_does_not_grow_past_one(lm):
    prime = lm.encode_prime("a")
    free = beam_search(lm, prime, 4, 12)
    stop = free[0].text[3]
    beams = beam_search(lm, prime, 4, 12, stop=[stop])
    assert all(stop not in b.text for b in beams)
    assert any(len(b.text) < 12 for b in beams)
    nodes = prediction_tree(lm, prime, 3, 3, stop=[stop])
    for node in nodes:
        assert not node.children if node.char == stop else all(not c.children for c in node.children if c.char == stop)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lm, p: generate(lm, [p], 5, num_samples=0), "`num_samples` must be at least 1"),
        (lambda lm, p: generate(lm, [p], 5, stop=[""]), "must not be empty"),
        (lambda lm, p: generate(lm, [p], 5, stop=["xyz"]), "could never match"),
        (lambda lm, p: generate(lm, [p], 0), "`length` must be at least 1"),
    ],
)
def test_bad_input_is_a_user_error(lm, call, message):
    with pytest.raises(SeqkitError, match=message):
        call(lm, lm.encode_prime("a"))


def test_more_streams_than_memory_holds_are_refused_with_the_figure(lm, monkeypatch):
    monkeypatch.setattr(streams_module, "available_memory", lambda: 64 << 20)
    with pytest.raises(SeqkitError, match=r"would need about .* GiB, more than half of the 0\.1 GiB available"):
        generate(lm, [lm.encode_prime("a")], 100, num_samples=1_000_000)


@pytest.fixture(scope="module")
def names_model(tmp_path_factory):
    """A tiny model trained on a list of names, one a line."""
    root = tmp_path_factory.mktemp("names")
    names = ["anna", "bob", "carla", "dan", "emma", "fred", "gina", "hank"] * 40
    (root / "names.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    config = char_config(embedding=8, layers=1, units=32, seq_len=16, batch_size=8, epochs=4, lr=1e-2, seed=1)
    train_char(root / "names.txt", root / "model", config, verbose=False)
    return root / "model"


def _cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "seqkit.cli", *args], capture_output=True, text=True, env=env)


def test_twenty_names_one_a_line(names_model):
    result = _cli("generate", "--model", str(names_model), "--num-samples", "20", "--stop", "\\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert len(lines) == 21 and lines[-1] == ""  # twenty texts, no newline inside one
    import json

    result = _cli("generate", "--model", str(names_model), "--prime", "a", "--prime", "b", "--stop", "\\n", "--json")
    rows = json.loads(result.stdout)["samples"]
    assert [r["prime"] for r in rows] == ["a", "b"] and all(r["log_prob"] <= 0 for r in rows)


def test_one_stream_on_a_terminal_is_shown_as_it_comes(names_model):
    """Through a pseudo-terminal: the same text as when piped."""
    args = [sys.executable, "-m", "seqkit.cli", "generate", "--model", str(names_model), "--length", "80"]
    piped = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdout=follower, stderr=subprocess.DEVNULL, env={**os.environ})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=300)
    shown = b"".join(chunks).decode().replace("\r\n", "\n")
    assert shown == piped.stdout
