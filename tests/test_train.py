"""The shared training loop: it learns, clips by global norm, and schedules the learning rate."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from seqkit.core import SequenceEncoder
from seqkit.core.train import Trainer, TrainConfig, make_optimizer
from seqkit.errors import SeqkitError


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
    assert history[-1].loss < history[0].loss
    assert history[-1].val_accuracy > 0.85
    assert history[-1].samples == 16 * 32
    loss, accuracy = trainer.evaluate(_dataset(x, y, 64, False))
    assert loss == pytest.approx(history[-1].val_loss, rel=1e-5)


@pytest.mark.parametrize("clip, expected_norm", [(1.0, 1.0), (100.0, 5.0), (0.0, 5.0)])
def test_gradients_are_clipped_by_their_global_norm(clip, expected_norm):
    trainer = Trainer(_model, TrainConfig(clip=clip), 1)
    grads = [tf.constant([3.0, 0.0]), tf.constant([[0.0, 4.0]])]  # global norm 5
    clipped = trainer.prepare_gradients(grads)
    assert float(tf.linalg.global_norm(clipped)) == pytest.approx(expected_norm, rel=1e-6)
    ratio = float(clipped[0][0] / clipped[1][0, 1])
    assert ratio == pytest.approx(0.75)  # direction kept


def test_cosine_schedule_warms_up_then_decays():
    opt = make_optimizer(TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1), total_steps=110)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    lr = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    assert lr[0] == pytest.approx(0.0, abs=1e-9)
    assert lr[1] == pytest.approx(5e-4, rel=1e-3)
    assert lr[2] == pytest.approx(1e-3, rel=1e-3)
    assert lr[2] > lr[3] > lr[4]
    assert lr[4] == pytest.approx(1e-4, rel=1e-3)


def test_weight_decay_selects_adamw_and_bad_settings_are_user_errors():
    assert isinstance(make_optimizer(TrainConfig(weight_decay=0.01), 10), keras.optimizers.AdamW)
    with pytest.raises(SeqkitError):
        make_optimizer(TrainConfig(lr=0), 10)
    with pytest.raises(SeqkitError):
        make_optimizer(TrainConfig(schedule="zigzag"), 10)
