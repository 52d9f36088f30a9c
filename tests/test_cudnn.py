"""The cuDNN path: the weights' layout (checked on any machine against cuDNN's documented
equations), when training and inference choose it, and, on a GPU, the same numbers and
gradients as the portable loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from seqkit.core import SequenceEncoder, cudnn, dispatch
from seqkit.core.inference import inference_function
from seqkit.core.trainer import TrainConfig, Trainer
from seqkit.errors import SeqkitError

CUDNN_CELLS = ["lstm", "gru", "rnn"]
on_gpu = pytest.mark.skipif(not cudnn.available(), reason="needs a GPU that TensorFlow sees")


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _cudnn_step(mode, flat, x, h, c, units):
    """One step of cuDNN's RNN as its documentation writes it, reading its weights from
    the flat buffer in cuDNN's layout: per gate (cuDNN's order) the input matrix [units,
    features], then the recurrent ones [units, units], then the input and recurrent biases."""
    gates = {"lstm": 4, "gru": 3, "rnn_tanh": 1}[mode]
    features = x.shape[-1]
    sizes = [units * features] * gates + [units * units] * gates + [units] * 2 * gates
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    W = [p.reshape(units, features) for p in parts[:gates]]
    R = [p.reshape(units, units) for p in parts[gates : 2 * gates]]
    bW, bR = parts[2 * gates : 3 * gates], parts[3 * gates :]
    lin = [x @ W[g].T + bW[g] for g in range(gates)]
    rec = [h @ R[g].T + bR[g] for g in range(gates)]
    if mode == "rnn_tanh":
        return np.tanh(lin[0] + rec[0]), c
    if mode == "lstm":
        i, f, g, o = (lin[k] + rec[k] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c
    r, z = _sigmoid(lin[0] + rec[0]), _sigmoid(lin[1] + rec[1])
    n = np.tanh(lin[2] + r * rec[2])
    return (1 - z) * n + z * h, c


@pytest.fixture
def float32_matmuls():
    """Full float32 products on the GPU (not TF32), so that both paths compute alike."""
    tf.config.experimental.enable_tensor_float_32_execution(False)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(True)


@pytest.mark.parametrize("cell", CUDNN_CELLS)
def test_weights_in_cudnns_layout_give_the_cells_equations(cell, float32_matmuls):
    """The packed buffer, read back as cuDNN reads it, computes what the cell computes;
    biases and recurrent bias are random so that none is hidden by zeros."""
    rng = np.random.default_rng(1)
    enc = SequenceEncoder(3, cell=cell)
    enc.build((None, None, 2))
    cell_layer = enc.cells[0]
    for w in cell_layer.weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    x, h, c = (rng.normal(size=(4, n)).astype("float32") for n in (2, 3, 3))
    states = (h, c) if cell == "lstm" else (h,)
    expected = cell_layer.step(cell_layer.project(x), states)
    flat = cudnn.params(cell_layer).numpy()
    got = _cudnn_step(cudnn.MODES[type(cell_layer)], flat, x, h, c, 3)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-5)


def _model(cell="lstm", unroll=False):
    def build():
        inputs = keras.Input((None, 2))
        return keras.Model(inputs, keras.layers.Dense(2)(SequenceEncoder(4, cell=cell, unroll=unroll)(inputs)))

    return build


@pytest.mark.skipif(cudnn.available(), reason="checks a machine without a GPU")
def test_cudnn_is_off_without_a_gpu_and_refused_when_asked_for():
    assert Trainer(_model(), TrainConfig(), 1).cudnn is False
    with pytest.raises(SeqkitError, match="need an NVIDIA GPU"):
        Trainer(_model(), TrainConfig(cudnn=True), 1)
    with pytest.raises(SeqkitError, match="need an NVIDIA GPU"):
        inference_function(_model()(), gpu=True)


@pytest.mark.parametrize("cell, unroll", [("peephole", False), ("lstm", True)])
def test_cudnn_is_refused_for_layers_it_cannot_run(cell, unroll):
    with pytest.raises(SeqkitError, match=f"and sequence_encoder.* \\({cell}\\) is not one"):
        Trainer(_model(cell, unroll), TrainConfig(cudnn=True), 1)


# -- on a GPU ----------------------------------------------------------------------------------
def _ops(fn, *args) -> set[str]:
    return {op.type for op in fn.get_concrete_function(*args).graph.get_operations()}


@on_gpu
@pytest.mark.parametrize("cell", CUDNN_CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cudnn_gives_the_portable_loops_numbers_and_gradients(cell, bidirectional, float32_matmuls):
    """Padded rows (one of them empty), a carried initial state, two layers, both
    directions: outputs, final states and every gradient agree with the portable loop."""
    rng = np.random.default_rng(2)
    enc = SequenceEncoder(8, cell=cell, layers=2, bidirectional=bidirectional, return_sequences=True, return_state=True)
    x = tf.constant(rng.normal(size=(4, 7, 3)), tf.float32)
    lengths = tf.constant([7, 3, 0, 1])
    enc(x, lengths=lengths)
    initial = [tf.constant(rng.normal(size=(4, 8)), tf.float32) for _ in enc.state_size]

    def run(gpu):
        @tf.function(autograph=False)
        def traced(x):
            with dispatch.kernels(cudnn=gpu), tf.GradientTape() as tape:
                tape.watch(x)
                out, *states = enc(x, lengths=lengths, initial_state=initial, training=True)
                loss = tf.reduce_sum(out**2) + sum(tf.reduce_sum(s * (k + 1)) for k, s in enumerate(states))
            return [out, *states], tape.gradient(loss, [x, *enc.trainable_variables])

        assert ("CudnnRNNV3" in _ops(traced, x)) is gpu
        return traced(x)

    (values, grads), (ref_values, ref_grads) = run(True), run(False)
    for got, want in zip(values + grads, ref_values + ref_grads):
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
    assert np.all(values[0].numpy()[2] == 0) and np.all(values[0].numpy()[3, 1:] == 0)


@on_gpu
def test_eager_calls_on_a_gpu_run_cudnn_and_traces_without_cudnn_dispatched_do_not(monkeypatch, float32_matmuls):
    calls, real = [], cudnn.run_layer
    monkeypatch.setattr(cudnn, "run_layer", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    enc = SequenceEncoder(4, return_state=True)
    x = tf.constant(np.random.default_rng(3).normal(size=(2, 5, 3)), tf.float32)
    eager = enc(x)
    assert calls
    portable = tf.function(lambda x: enc(x), autograph=False)
    assert "CudnnRNNV3" not in _ops(portable, x)
    for a, b in zip(eager, portable(x)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@on_gpu
def test_training_uses_cudnn_on_a_gpu_and_learns_and_inference_asks_for_it(float32_matmuls):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6, 2)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(256, seed=0).repeat().batch(32, drop_remainder=True)
    trainer = Trainer(_model("gru"), TrainConfig(epochs=15, lr=1e-2), 10)
    assert trainer.cudnn and "cuDNN kernels" in trainer.step_notes
    batch = next(iter(data))
    assert "CudnnRNNV3" in _ops(trainer._grads, *batch)
    trainer.fit(data, data.take(8), verbose=False)
    loss, accuracy = trainer.evaluate(data.take(8))
    assert accuracy > 0.9
    assert "CudnnRNNV3" not in _ops(trainer._forward, *batch)  # evaluation: one XLA program
    for gpu in (False, True):
        predict = inference_function(trainer.model, gpu=gpu)
        assert ("CudnnRNNV3" in _ops(predict, batch[0])) is gpu
        np.testing.assert_allclose(predict(batch[0]), trainer.model(batch[0], training=False), atol=1e-3)
