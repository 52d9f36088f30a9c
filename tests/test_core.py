"""The sequence core: cell equations, masking, carried state, dropout, serialization."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from seqkit import machine
from seqkit.core import SequenceEncoder, native
from seqkit.core.dispatch import kernels
from seqkit.errors import SeqkitError
from seqkit.machine import cpu_has_bf16, cpu_has_f16c

CELLS = ["lstm", "gru", "rnn", "peephole"]
rng = np.random.default_rng(0)


def _random(*shape):
    return rng.normal(size=shape).astype("float32")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_result(cell, bidirectional):
    enc = SequenceEncoder(5, cell=cell, layers=2, bidirectional=bidirectional, return_state=True)
    lengths = np.array([6, 4, 1])
    x = _random(3, 6, 3)
    padded = x.copy()
    for b, n in enumerate(lengths):
        padded[b, n:] = 7.0  # garbage that must be ignored
    out, *states = enc(padded, lengths=lengths)
    masked_out, *masked_states = enc(padded, mask=tf.sequence_mask(lengths, 6))
    np.testing.assert_allclose(out, masked_out, atol=1e-6)
    for b, n in enumerate(lengths):
        alone, *alone_states = enc(x[b : b + 1, :n])
        np.testing.assert_allclose(out[b], alone[0], atol=1e-5)
        for s, s_alone in zip(states, alone_states):
            np.testing.assert_allclose(s[b], s_alone[0], atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_sequences_are_zero_after_each_sequence_ends(cell):
    enc = SequenceEncoder(4, cell=cell, return_sequences=True)
    x = _random(2, 5, 3)
    out = enc(x, lengths=[5, 2]).numpy()
    assert out.shape == (2, 5, 4)
    assert np.all(out[1, 2:] == 0) and np.all(out[1, :2] != 0)
    np.testing.assert_allclose(out[1, :2], enc(x[1:, :2])[0], atol=1e-6)


def test_final_state_is_not_the_last_padded_output():
    """The classic bug: output[:, -1] of a padded batch is not the sequence's final state."""
    enc = SequenceEncoder(4, return_sequences=True, return_state=True)
    out, h, _ = enc(_random(1, 6, 3), lengths=[3])
    np.testing.assert_allclose(h, out[:, 2], atol=1e-6)
    assert np.all(out[:, -1] == 0)


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_long_run(cell):
    """Feeding a sequence in pieces with the state carried gives the full run's result."""
    enc = SequenceEncoder(4, cell=cell, layers=2, return_sequences=True, return_state=True)
    x = _random(2, 7, 3)
    full, *full_states = enc(x)
    first, *states = enc(x[:, :3])
    pieces = [first]
    for t in range(3, 7):
        step, *states = enc(x[:, t : t + 1], initial_state=states)
        pieces.append(step)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5)
    for a, b in zip(states, full_states):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _copy_into_keras(enc, keras_layer, x):
    keras_layer.build(x.shape)
    weights = enc.get_weights()
    if isinstance(keras_layer, keras.layers.GRU):
        kernel, recurrent, bias, recurrent_bias = weights
        weights = [kernel, recurrent, np.stack([bias, recurrent_bias])]
    keras_layer.set_weights(weights)
    return keras_layer(x)


@pytest.mark.parametrize(
    "cell, keras_layer",
    [
        ("lstm", lambda: keras.layers.LSTM(6, return_sequences=True)),
        ("gru", lambda: keras.layers.GRU(6, return_sequences=True, reset_after=True)),
        ("rnn", lambda: keras.layers.SimpleRNN(6, return_sequences=True)),
    ],
)
def test_cells_match_keras_with_the_same_weights(cell, keras_layer):
    x = _random(3, 5, 4)
    enc = SequenceEncoder(6, cell=cell, return_sequences=True)
    ours = enc(x)
    np.testing.assert_allclose(ours, _copy_into_keras(enc, keras_layer(), x), atol=1e-5)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_peephole_follows_gers_schmidhuber_equations():
    x = _random(2, 4, 3)
    enc = SequenceEncoder(5, cell="peephole", return_sequences=True)
    enc(x)
    kernel, recurrent, bias, peephole = enc.get_weights()
    peephole = peephole + 0.5  # make the peepholes matter, then push them back in
    enc.set_weights([kernel, recurrent, bias, peephole])
    ours = enc(x).numpy()
    h = np.zeros((2, 5), "float32")
    c = np.zeros((2, 5), "float32")
    for t in range(4):
        z = x[:, t] @ kernel + h @ recurrent + bias
        zi, zf, zg, zo = np.split(z, 4, axis=-1)
        i = _sigmoid(zi + peephole[0] * c)
        f = _sigmoid(zf + peephole[1] * c)
        c = f * c + i * np.tanh(zg)
        o = _sigmoid(zo + peephole[2] * c)
        h = o * np.tanh(c)
        np.testing.assert_allclose(ours[:, t], h, atol=1e-5)


def test_dropout_is_active_in_training_only():
    enc = SequenceEncoder(8, layers=2, dropout=0.5, seed=3)
    x = _random(4, 5, 3)
    np.testing.assert_array_equal(enc(x, training=False), enc(x, training=False))
    assert not np.allclose(enc(x, training=True), enc(x, training=False))
    plain = SequenceEncoder(8, layers=2)
    plain(x)
    plain.set_weights(enc.get_weights())
    np.testing.assert_allclose(enc(x, training=False), plain(x), atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_masks_the_recurrent_kernels_once_per_batch_in_training_only(cell):
    enc = SequenceEncoder(8, cell=cell, layers=2, weight_drop=0.5, seed=3, return_sequences=True)
    row = _random(1, 5, 3)
    x = np.concatenate([row, row, _random(1, 5, 3)])
    plain = SequenceEncoder(8, cell=cell, layers=2, return_sequences=True)
    enc(x), plain(x)
    plain.set_weights(enc.get_weights())
    np.testing.assert_allclose(enc(x, training=False), plain(x), atol=1e-6)
    dropped = enc(x, training=True)
    np.testing.assert_allclose(dropped[:, 0], plain(x)[:, 0], atol=1e-6)  # from a zero state
    assert not np.allclose(dropped[:, 1:], plain(x)[:, 1:], atol=1e-3)
    np.testing.assert_allclose(dropped[0], dropped[1], atol=1e-6)  # one mask for the batch
    assert not np.allclose(dropped, enc(x, training=True), atol=1e-3)  # a new mask each call


@pytest.mark.parametrize("cell", CELLS)
def test_saves_and_loads_with_keras(cell, tmp_path):
    inputs = keras.Input((None, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    encoded = SequenceEncoder(4, cell=cell, layers=2, dropout=0.2, weight_drop=0.1, bidirectional=True)(masked)
    model = keras.Model(inputs, keras.layers.Dense(2)(encoded))
    x = _random(3, 6, 3)
    x[1, 4:] = 0.0
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(model(x), loaded(x))
    assert loaded.layers[2].get_config() == model.layers[2].get_config()


@pytest.mark.parametrize("jit", [False, True])
def test_same_result_eager_and_compiled(jit):
    enc = SequenceEncoder(4, layers=2, return_state=True)
    x = _random(2, 5, 3)
    eager = enc(x, lengths=[5, 3])
    compiled = tf.function(lambda x, n: enc(x, lengths=n), jit_compile=jit)(x, tf.constant([5, 3]))
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_unrolled_loop_matches_while_loop(cell):
    x = _random(2, 5, 3)
    loop = SequenceEncoder(4, cell=cell, layers=2, return_sequences=True, return_state=True)
    unrolled = SequenceEncoder(4, cell=cell, layers=2, return_sequences=True, return_state=True, unroll=True)
    loop(x)
    unrolled(x)
    unrolled.set_weights(loop.get_weights())
    # training=True (no dropout here): the graph loop (the fused scan for the LSTM), or
    # unrolled when asked; inference unrolls a known length of its own accord.
    reference = loop(x, lengths=[5, 2], training=True)
    for result in (unrolled(x, lengths=[5, 2], training=True), loop(x, lengths=[5, 2])):
        for a, b in zip(reference, result):
            np.testing.assert_allclose(a, b, atol=1e-5)
    unknown_length = tf.function(lambda x: loop(x, lengths=[5, 2]), input_signature=[tf.TensorSpec([2, None, 3])])
    for a, b in zip(reference, unknown_length(tf.constant(x))):  # inference in the graph loop
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs", [{"cell": "transformer"}, {"layers": 0}, {"units": 0}, {"dropout": 1.0}, {"weight_drop": -0.1}]
)
def test_impossible_settings_are_user_errors(kwargs):
    with pytest.raises(SeqkitError):
        SequenceEncoder(**{"units": 4, **kwargs})


def test_wrong_number_of_initial_states_is_a_user_error():
    enc = SequenceEncoder(4, layers=2)
    with pytest.raises(SeqkitError, match="needs 4"):
        enc(_random(1, 2, 3), initial_state=[tf.zeros([1, 4])])


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("weight_drop", [0.0, 0.5])
def test_fused_lstm_matches_autodiff_values_and_gradients(return_sequences, masked, weight_drop):
    x = tf.constant(_random(3, 6, 4))
    lengths = tf.constant([6, 2, 4]) if masked else None
    options = dict(layers=2, return_sequences=return_sequences, return_state=True, weight_drop=weight_drop, seed=5)
    fused = SequenceEncoder(5, **options)
    plain = SequenceEncoder(5, **options, fused=False)  # same seed: the same kernel masks
    fused(x)
    plain(x)
    plain.set_weights(fused.get_weights())
    init = [tf.constant(_random(3, 5)) for _ in range(4)]
    upstream = [tf.constant(_random(*t.shape)) for t in fused(x, lengths=lengths, initial_state=init)]

    def loss_and_grads(enc):
        with tf.GradientTape() as tape:
            tape.watch([x, *init])
            results = enc(x, lengths=lengths, initial_state=init, training=True)  # fused only when training
            loss = sum(tf.reduce_sum(r * u) for r, u in zip(results, upstream))
        return results, tape.gradient(loss, [x, *init, *enc.trainable_variables])

    (ours, our_grads), (ref, ref_grads) = loss_and_grads(fused), loss_and_grads(plain)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(our_grads, ref_grads):
        np.testing.assert_allclose(a, b, atol=1e-4)


SPLITS = [{"native": True}, {"bf16_gradients": True}, {"native": True, "bf16_gradients": True}]
BF16_LOOPS = pytest.param(
    {"native": True, "bf16_recurrence": True},
    id="native bf16 loops",
    marks=pytest.mark.skipif(not cpu_has_bf16(), reason="no bf16 dot products on this CPU"),
)


def _split_grads_and_scan_grads(split, graph, monkeypatch, batch=3, steps=6, units=5, layers=2):
    """Outputs and gradients with `split` and with the inlined XLA scan, and whether the
    native kernels were built."""
    built = []
    monkeypatch.setattr(native, "kernels", lambda: built.append(1) or native._load(native.LOOPS))
    x = tf.constant(_random(batch, steps, 4))
    enc = SequenceEncoder(units, layers=layers, return_sequences=True, return_state=True)
    enc(x)
    lengths = tf.constant([steps - 2 * i % steps for i in range(batch)])  # padded rows among them
    upstream = [tf.constant(_random(*t.shape)) for t in enc(x, lengths=lengths)]

    def loss_and_grads(options):
        with kernels(**options):
            with tf.GradientTape() as tape:
                tape.watch(x)
                results = enc(x, lengths=lengths, training=True)
                loss = sum(tf.reduce_sum(r * u) for r, u in zip(results, upstream))
            return results, tape.gradient(loss, [x, *enc.trainable_variables])

    run = tf.function(loss_and_grads, autograph=False) if graph else loss_and_grads
    return run(split), loss_and_grads({}), bool(built)


def _assert_close(ours, ref, tolerance):
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=tolerance * float(tf.reduce_max(tf.abs(b))))


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("split", [*SPLITS, BF16_LOOPS], ids=["native", "bf16", "native+bf16", "native bf16 loops"])
def test_split_steps_match_the_inlined_scan(graph, split, monkeypatch):
    """Native kernels compute what the XLA loops do; bf16 weight gradients (the large
    matmuls after the backward loop from bf16 values, float32 sums) come within 1%, and the
    outputs stay exact, padding included; bf16 step products in the loops bring the outputs
    and gradients within 1% too."""
    (ours, our_grads), (ref, ref_grads), built = _split_grads_and_scan_grads(split, graph, monkeypatch)
    _assert_close(ours, ref, 1e-2 if split.get("bf16_recurrence") else 1e-5)
    _assert_close(our_grads, ref_grads, 1e-2 if split.get("bf16_gradients") or split.get("bf16_recurrence") else 1e-5)
    assert built == bool(split.get("native"))
    if split.get("bf16_gradients"):
        kernel = 1  # x's gradient comes first
        assert not np.array_equal(our_grads[kernel], ref_grads[kernel])  # the bf16 path was taken


@pytest.mark.parametrize("split", [{"native": True}, BF16_LOOPS], ids=["native", "native bf16 loops"])
def test_native_kernels_match_the_scan_when_the_recurrent_kernel_is_packed_in_several_panels(split, monkeypatch):
    """At 520 units the recurrent kernel, packed once per op, is cut along its depth into
    cache-sized panels (2 forward, 6 backward on a 2-core x86 machine) and the batch into
    one row block per thread: every panel edge must line up. In bf16 the kernel is packed
    16 columns a vector, and 520 leaves a part-filled one going back (7 rows: a 4-row tile
    and three single rows)."""
    (ours, our_grads), (ref, ref_grads), built = _split_grads_and_scan_grads(
        split, False, monkeypatch, batch=7, steps=3, units=520, layers=1
    )
    assert built
    tolerance = 1e-2 if split.get("bf16_recurrence") else 1e-5
    _assert_close(ours, ref, tolerance)
    _assert_close(our_grads, ref_grads, tolerance)


def test_native_kernels_project_the_inputs_a_few_steps_at_a_time(monkeypatch):
    """The forward op projects each thread's inputs for a few steps at once (at 520 units
    on a 2-core machine, 6 of these 20 steps: 6, 6, 6 and 2), padded rows among them."""
    (ours, our_grads), (ref, ref_grads), built = _split_grads_and_scan_grads(
        {"native": True}, True, monkeypatch, batch=9, steps=20, units=520, layers=1
    )
    assert built
    _assert_close(ours, ref, 1e-5)
    _assert_close(our_grads, ref_grads, 1e-5)


def test_bf16_loops_are_a_mode_of_the_native_kernels():
    with pytest.raises(SeqkitError, match="native kernels"):
        with kernels(bf16_gradients=True, bf16_recurrence=True):
            pass


@pytest.mark.parametrize("bidirectional, units, steps", [(False, 5, 6), (True, 5, 6), (False, 520, 20)])
def test_native_inference_matches_the_xla_inference(bidirectional, units, steps):
    """At inference the native kernels run their forward loop alone (the op that keeps
    nothing for a backward pass): the same outputs and final states as XLA's unrolled
    loop, padded rows and several packed panels (520 units) included, and inputs projected
    a few steps at a time (at 520 units on a 2-core machine, 7, 7 and 6 of the 20 steps)."""
    enc = SequenceEncoder(units, layers=2, bidirectional=bidirectional, return_sequences=True, return_state=True)
    x = tf.constant(_random(7, steps, 4))
    lengths = tf.constant([steps, steps - 2, 1, steps, 2, steps - 1, 3])

    def infer(x, lengths):
        with kernels(native=True):
            return enc(x, lengths=lengths, training=False)

    traced = tf.function(infer, autograph=False)
    ops = {op.type for op in traced.get_concrete_function(x, lengths).graph.get_operations()}
    assert "SeqkitLstmInference" in ops and "SeqkitLstmForward" not in ops
    reference = enc(x, lengths=lengths, training=False)
    for ours in (traced(x, lengths), infer(x, lengths)):
        _assert_close(ours, reference, 1e-5)


@pytest.mark.parametrize("split", SPLITS[:2], ids=["native", "bf16"])
@pytest.mark.parametrize("options", [{"cell": "gru"}, {"cell": "peephole"}, {"fused": False}, {"unroll": True}])
def test_split_steps_refuse_layers_without_the_fused_lstm(options, split):
    enc = SequenceEncoder(4, **options)
    with kernels(**split), pytest.raises(SeqkitError, match="fused LSTM"):
        enc(_random(2, 3, 3), training=True)


@pytest.mark.parametrize("cell", CELLS)
def test_single_steps_equal_the_sequence_run(cell):
    enc = SequenceEncoder(4, cell=cell, layers=2, return_sequences=True, return_state=True)
    x = _random(2, 5, 3)
    full, *states = enc(x)
    carried = enc.get_initial_state(2)
    for t in range(5):
        out, carried = enc.step(tf.constant(x[:, t]), carried)
        np.testing.assert_allclose(out, full[:, t], atol=1e-5)
    for a, b in zip(carried, states):
        np.testing.assert_allclose(a, b, atol=1e-5)


native_step = pytest.mark.skipif(
    not native.available(native.STEP), reason="the native decoding step does not build here"
)


STEP_CASES = [(1, tf.float32, 1e-5), (3, tf.float32, 1e-5), (3, tf.float16, 3e-3)]  # batch, weights, atol


@native_step
@pytest.mark.parametrize("batch, dtype, atol", STEP_CASES)
def test_native_steps_equal_the_cells_steps(batch, dtype, atol):
    if dtype == tf.float16 and not cpu_has_f16c():
        pytest.skip("float16 weights need F16C")
    enc = SequenceEncoder(64, layers=2)  # four blocks a layer: two a thread, read in either order
    enc(_random(1, 1, 5))
    x, states = tf.constant(_random(batch, 5)), [tf.constant(_random(batch, 64)) for _ in range(4)]
    native_run = tf.function(lambda x, s, i: enc.step(x, s, enc.pack_step_weights(dtype), i), jit_compile=True)
    forwards, backwards = (tf.nest.flatten(native_run(x, states, index)) for index in (0, 1))
    want = tf.nest.flatten(enc.step(x, states))
    for got, reversed_order, expected in zip(forwards, backwards, want):
        np.testing.assert_array_equal(got, reversed_order)  # the order of the blocks changes no bit
        np.testing.assert_allclose(got, expected, atol=atol)
    assert (max(float(np.abs(g - w).max()) for g, w in zip(forwards, want)) > 1e-5) == (dtype == tf.float16)


@native_step
@pytest.mark.skipif("avx512f" not in machine.cpu_flags(), reason="without AVX-512 the test above runs the AVX2 build")
def test_the_avx2_build_of_the_native_step_equals_the_cells_steps(tmp_path):
    """lstm_step.cc has code for AVX2 CPUs that a build for this CPU leaves out: build it for
    Haswell (benchmarks/experiments/avx2/c++) in a fresh kernel cache and run the test above on it."""
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path),
        "CXX": str(REPO / "benchmarks" / "experiments" / "avx2" / "c++"),
        "SEQKIT_AVX2_CXX": os.environ.get("CXX", "c++"),
    }
    script = "import test_core as t\nfor case in t.STEP_CASES: t.test_native_steps_equal_the_cells_steps(*case)"
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO / "tests", capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(list((tmp_path / "seqkit" / "kernels").glob("lstm-step-*.so"))) == 1


@pytest.mark.parametrize(
    "cell, units, expected", [("lstm", 32, True), ("lstm", 24, False), ("gru", 32, False), ("peephole", 32, False)]
)
def test_only_lstms_of_16_unit_blocks_step_natively(cell, units, expected):
    enc = SequenceEncoder(units, cell=cell, layers=2)
    enc(_random(1, 1, 5))
    assert enc.steps_natively() == (expected and native.available(native.STEP))


def test_a_failed_build_is_one_line_and_is_not_retried_by_the_next_process(tmp_path, monkeypatch):
    compiler, calls = tmp_path / "cxx", tmp_path / "calls"
    compiler.write_text(
        f'#!/bin/sh\necho "$1" >> {calls}\n[ "$1" = --version ] && exec echo fake 1.0\n'
        'echo "lstm_kernel.cc:1:1: error: boom" >&2\nexit 1\n'
    )
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(SeqkitError, match="failed \\(lstm_kernel.cc:1:1: error: boom\\): train without them"):
        native._build_and_load(native.LOOPS)
    builds = calls.read_text().count("-shared")
    with pytest.raises(SeqkitError, match="error: boom.*delete .*\\.failed to retry"):
        native._build_and_load(native.LOOPS)
    assert builds == 1 and calls.read_text().count("-shared") == 1


def test_the_kernel_cache_key_is_the_source_and_tools_not_where_seqkit_is_installed(tmp_path, monkeypatch):
    key = native._cache_key(native.LOOPS, "/usr/bin/c++", "c++ 1.0")
    copy = tmp_path / "checkout" / "seqkit" / "core"
    copy.mkdir(parents=True)
    (copy / "lstm_kernel.cc").write_text(native.LOOPS.source.read_text())
    monkeypatch.setattr(native.Library, "source", property(lambda library: copy / f"{library.stem}.cc"))
    assert native._cache_key(native.LOOPS, "/usr/bin/c++", "c++ 1.0") == key
    assert native._cache_key(native.LOOPS, "/usr/bin/c++", "c++ 2.0") != key
    (copy / "lstm_kernel.cc").write_text(native.LOOPS.source.read_text() + "// changed\n")
    assert native._cache_key(native.LOOPS, "/usr/bin/c++", "c++ 1.0") != key
