"""The shared training loop: it learns, clips by global norm, and schedules the learning rate."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from seqkit.core import SequenceEncoder, cudnn
from seqkit.core.inference import inference_function
from seqkit.core.trainer import TrainConfig, Trainer, make_optimizer
from seqkit.errors import SeqkitError
from seqkit.machine import cpu_has_bf16

# The CPU's defaults (native kernels, bf16 gradients) are off on a GPU, where cuDNN trains.
cpu_defaults = pytest.mark.skipif(cudnn.available(), reason="checks the defaults on a CPU")


def _toy_task(n=256, steps=6, seed=0):
    """Label = whether the first feature summed over time is positive: needs memory."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, 2)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("int32")
    return x, y


def _model():
    inputs = keras.Input((None, 2))
    return keras.Model(inputs, keras.layers.Dense(2)(SequenceEncoder(16, cell="gru")(inputs)))


def _dataset(x, y, batch, train):
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return (ds.shuffle(len(x), seed=0).repeat() if train else ds).batch(batch, drop_remainder=train)


@pytest.mark.parametrize("jit", [False, True])
def test_trainer_learns_a_small_task(jit):
    keras.utils.set_random_seed(0)
    x, y = _toy_task()
    config = TrainConfig(epochs=4, lr=1e-2, jit_compile=jit)
    trainer = Trainer(_model, config, steps_per_epoch=16)
    history = trainer.fit(_dataset(x, y, 32, True), evaluation=_dataset(x, y, 64, False), verbose=False)
    assert [r.epoch for r in history] == [1, 2, 3, 4]
    assert trainer.step == 64
    assert history[-1].loss < history[0].loss
    assert history[-1].val_accuracy > 0.85
    assert history[-1].samples == 16 * 32
    loss, accuracy = trainer.evaluate(_dataset(x, y, 64, False))
    assert loss == pytest.approx(history[-1].val_loss, rel=1e-5)


@pytest.mark.parametrize(
    "split",
    [
        {"native_kernels": True},
        {"bf16_gradients": True},
        pytest.param(
            {"native_kernels": True, "bf16_recurrence": True},
            marks=pytest.mark.skipif(not cpu_has_bf16(), reason="no bf16 dot products on this CPU"),
        ),
    ],
    ids=["native", "bf16", "bf16 recurrence"],
)
def test_split_steps_train_like_the_xla_step(split):
    """With native kernels or bf16 weight gradients the step is not one XLA program (the
    loops run on their own, the LSTM's weight gradients leave XLA): it must learn as the
    XLA step does."""
    x, y = _toy_task()

    def model():
        inputs = keras.Input((None, 2))
        return keras.Model(inputs, keras.layers.Dense(2)(SequenceEncoder(16, layers=2)(inputs)))

    results = []
    for options in ({}, split):
        keras.utils.set_random_seed(0)
        config = TrainConfig(epochs=4, lr=1e-2, **{"native_kernels": False, "bf16_gradients": False, **options})
        trainer = Trainer(model, config, steps_per_epoch=16)
        assert (trainer.native_kernels, trainer.bf16_gradients) == (config.native_kernels, config.bf16_gradients)
        history = trainer.fit(_dataset(x, y, 32, True), evaluation=_dataset(x, y, 64, False), verbose=False)
        results.append(history[-1])
    plain, ours = results
    assert ours.val_accuracy > 0.85
    assert ours.loss == pytest.approx(plain.loss, rel=0.05, abs=0.01)


def _lstm_or(cell):
    def model():
        inputs = keras.Input((None, 2))
        return keras.Model(inputs, keras.layers.Dense(2)(SequenceEncoder(4, cell=cell)(inputs)))

    return model


@cpu_defaults
@pytest.mark.parametrize(
    "has_bf16, cell, expected", [(True, "lstm", True), (True, "gru", False), (False, "lstm", False)]
)
def test_bf16_gradients_by_default_only_where_they_pay(monkeypatch, has_bf16, cell, expected):
    from seqkit import machine

    monkeypatch.setattr(machine, "cpu_has_bf16", lambda: has_bf16)
    assert Trainer(_lstm_or(cell), TrainConfig(bf16_gradients=None), 1).bf16_gradients is expected
    if cell != "lstm":
        with pytest.raises(SeqkitError, match="gru"):
            Trainer(_lstm_or(cell), TrainConfig(bf16_gradients=True), 1)


@cpu_defaults
@pytest.mark.parametrize("builds, cell, expected", [(True, "lstm", True), (True, "gru", False), (False, "lstm", False)])
def test_native_kernels_by_default_where_they_build(monkeypatch, builds, cell, expected):
    """Where the kernels cannot be built (no compiler) training keeps the XLA loops; asked
    for explicitly, that ends in the build's error before the first step."""
    from seqkit.core import native

    failure = SeqkitError("Building seqkit's native LSTM kernels needs a C++ compiler (set CXX, or install g++)")
    monkeypatch.setattr(native, "_load", (lambda library: native.tf) if builds else (lambda library: failure))
    assert Trainer(_lstm_or(cell), TrainConfig(native_kernels=None), 1).native_kernels is expected
    if cell != "lstm":
        with pytest.raises(SeqkitError, match="gru"):
            Trainer(_lstm_or(cell), TrainConfig(native_kernels=True), 1)
    if not builds:
        with pytest.raises(SeqkitError, match="C\\+\\+ compiler"):
            Trainer(_lstm_or(cell), TrainConfig(native_kernels=True), 1)


def test_bf16_recurrence_needs_the_native_kernels():
    with pytest.raises(SeqkitError, match="bf16 recurrence runs in the native LSTM kernels"):
        Trainer(_lstm_or("lstm"), TrainConfig(native_kernels=False, bf16_recurrence=True), 1)


@cpu_defaults
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_function_runs_the_native_kernels_where_training_would(cell):
    """One compiled call for batches: native kernels by default for fused LSTMs, XLA for
    the rest; the same logits either way, and asking for native kernels with a GRU is
    refused."""
    model = _lstm_or(cell)()
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 5, 2)), tf.float32)
    predict = inference_function(model)
    ops = {op.type for op in predict.get_concrete_function(x).graph.get_operations()}
    assert ("SeqkitLstmInference" in ops) is (cell == "lstm")
    np.testing.assert_allclose(predict(x), model(x, training=False), atol=1e-5)
    np.testing.assert_allclose(inference_function(model, native_kernels=False)(x), model(x), atol=1e-5)
    if cell != "lstm":
        with pytest.raises(SeqkitError, match="gru"):
            inference_function(model, native_kernels=True)


@pytest.mark.parametrize("clip, expected_norm", [(1.0, 1.0), (100.0, 5.0), (0.0, 5.0)])
def test_gradients_are_clipped_by_their_global_norm(clip, expected_norm):
    trainer = Trainer(_model, TrainConfig(clip=clip), 1)
    grads = [tf.constant([3.0, 0.0]), tf.constant([[0.0, 4.0]])]  # global norm 5
    clipped = trainer.prepare_gradients(grads)
    assert float(tf.linalg.global_norm(clipped)) == pytest.approx(expected_norm, rel=1e-6)
    ratio = float(clipped[0][0] / clipped[1][0, 1])
    assert ratio == pytest.approx(0.75)  # direction kept


def test_cosine_schedule_warms_up_then_decays():
    config = TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert config.lr_at(0, 0.0) == pytest.approx(1e-4)
    assert config.lr_at(9, 0.1) == pytest.approx(1e-3)
    assert config.lr_at(50, 0.5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert config.lr_at(100, 1.0) == pytest.approx(1e-4)
    assert config.lr_at(100, 3.0) == pytest.approx(1e-4)  # past the end stays at the floor
    assert TrainConfig(lr=1e-3, schedule="constant").lr_at(100, 0.9) == 1e-3


def test_weight_decay_selects_adamw_and_bad_settings_are_user_errors():
    assert isinstance(make_optimizer(TrainConfig(weight_decay=0.01)), keras.optimizers.AdamW)
    with pytest.raises(SeqkitError):
        TrainConfig(lr=0)
    with pytest.raises(SeqkitError):
        TrainConfig(schedule="zigzag")


def test_checkpoints_resume_step_optimizer_and_time(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _toy_task()
    config = TrainConfig(epochs=2, lr=1e-2)
    first = Trainer(_model, config, steps_per_epoch=4, checkpoint_dir=tmp_path)
    first.fit(_dataset(x, y, 32, True), evaluation=_dataset(x, y, 64, False), verbose=False)
    assert first.step == 8
    again = Trainer(_model, config, steps_per_epoch=4, checkpoint_dir=tmp_path)
    assert again.restore()
    assert again.step == 8
    assert float(again.seconds.numpy()) == pytest.approx(float(first.seconds.numpy()))
    for a, b in zip(first.optimizer.variables, again.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert again.fit(_dataset(x, y, 32, True), verbose=False) == []  # already finished
    assert again.restore("best")
    assert (tmp_path / "best").is_dir()


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    Trainer(_model, TrainConfig(), 1, checkpoint_dir=tmp_path).save()

    def other():
        inputs = keras.Input((None, 2))
        return keras.Model(inputs, keras.layers.Dense(2)(SequenceEncoder(7)(inputs)))

    with pytest.raises(SeqkitError, match="do not match this model"):
        Trainer(other, TrainConfig(), 1, checkpoint_dir=tmp_path).restore()


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = _toy_task(n=128)
    x[64:] = np.nan  # the third batch of 32 onwards is poisoned
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    trainer = Trainer(_model, TrainConfig(epochs=3), steps_per_epoch=2, checkpoint_dir=tmp_path)
    with pytest.raises(SeqkitError, match="loss became nan in training step 3"):
        trainer.fit(ds, verbose=False)
    assert trainer.managers["checkpoints"].latest_checkpoint.endswith("ckpt-2")


def test_the_time_budget_ends_training_early():
    x, y = _toy_task()
    trainer = Trainer(_model, TrainConfig(epochs=1000), steps_per_epoch=4)
    history = trainer.fit(_dataset(x, y, 32, True), max_seconds=1e-9, verbose=False)
    assert trainer.step == 1 and len(history) == 1
    assert trainer.progress(1e-9) == 1.0


def test_without_an_epoch_limit_the_time_budget_alone_ends_training():
    x, y = _toy_task()
    trainer = Trainer(_model, TrainConfig(epochs=None), steps_per_epoch=4)
    with pytest.raises(SeqkitError, match="a time budget"):
        trainer.fit(_dataset(x, y, 32, True), verbose=False)
    history = trainer.fit(_dataset(x, y, 32, True), max_seconds=1e-9, verbose=False)
    assert trainer.total_steps is None and trainer.step == 1 and len(history) == 1
    assert trainer.progress(1e-9) == 1.0


def _values(variables):
    return [np.array(v) for v in variables]


def test_weight_averages_follow_a_warmed_up_decay():
    keras.utils.set_random_seed(0)
    x, y = _toy_task()
    trainer = Trainer(_model, TrainConfig(epochs=1, lr=1e-2, ema=0.9), steps_per_epoch=1)
    before = _values(trainer.model.trainable_variables)
    trainer.fit(_dataset(x, y, 32, True), verbose=False)
    after = _values(trainer.model.trainable_variables)
    decay = min(0.9, (1 + 1) / (10 + 1))  # after the first update
    with trainer.averaged_weights():
        averaged = _values(trainer.model.trainable_variables)
    for b, a, m in zip(before, after, averaged):
        np.testing.assert_allclose(m, decay * b + (1 - decay) * a, rtol=1e-5, atol=1e-7)
    for a, now in zip(after, trainer.model.trainable_variables):
        np.testing.assert_array_equal(a, np.array(now))  # the raw weights are back


def test_with_averages_evaluation_and_the_best_checkpoint_use_them_and_training_resumes_raw(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _toy_task()
    evaluation = _dataset(x, y, 64, False)
    config = TrainConfig(epochs=2, lr=1e-2, ema=0.9)
    trainer = Trainer(_model, config, steps_per_epoch=8, checkpoint_dir=tmp_path)
    history = trainer.fit(_dataset(x, y, 32, True), evaluation=evaluation, verbose=False)
    raw = _values(trainer.model.trainable_variables)
    with trainer.averaged_weights():
        averaged = _values(trainer.model.trainable_variables)
        assert trainer.evaluate(evaluation)[0] == pytest.approx(history[-1].val_loss, rel=1e-5)
    assert trainer.evaluate(evaluation)[0] != pytest.approx(history[-1].val_loss, rel=1e-5)
    assert not all(np.allclose(a, b) for a, b in zip(raw, averaged))

    best, latest = (Trainer(_model, config, 8, checkpoint_dir=tmp_path) for _ in range(2))
    assert best.restore("best") and latest.restore()
    assert best.step == latest.step == 16 and history[-1].val_loss == min(r.val_loss for r in history)
    for a, b in zip(averaged, _values(best.model.trainable_variables)):
        np.testing.assert_array_equal(a, b)  # the best holds what was evaluated
    for r, c in zip(raw, _values(latest.model.trainable_variables)):
        np.testing.assert_array_equal(r, c)  # the periodic one what training goes on from
    with latest.averaged_weights():
        for a, c in zip(averaged, _values(latest.model.trainable_variables)):
            np.testing.assert_array_equal(a, c)  # and the averages, so a resume is exact


def test_the_raw_weights_come_back_when_an_averaged_block_fails():
    trainer = Trainer(_model, TrainConfig(ema=0.5), 1)
    trainer.averages[0].assign_add(tf.ones_like(trainer.averages[0]))
    raw = _values(trainer.model.trainable_variables)
    with pytest.raises(KeyboardInterrupt):
        with trainer.averaged_weights():
            assert not np.array_equal(np.array(trainer.model.trainable_variables[0]), raw[0])
            raise KeyboardInterrupt
    for r, now in zip(raw, trainer.model.trainable_variables):
        np.testing.assert_array_equal(r, np.array(now))


@pytest.mark.parametrize("ema", [-0.1, 1.0])
def test_a_weight_average_decay_outside_0_1_is_a_user_error(ema):
    with pytest.raises(SeqkitError, match="weight-average decay"):
        TrainConfig(ema=ema)
