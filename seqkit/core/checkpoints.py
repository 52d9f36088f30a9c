"""Reading checkpoints back: the newest one that restores, skipping damaged ones.

Training (:class:`seqkit.core.trainer.Trainer`) restores its whole state this way, and a
decoder restores just the model's weights from the same files, without a trainer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tensorflow as tf

from seqkit.errors import SeqkitError


def weights_checkpoint(model) -> tf.train.Checkpoint:
    """A checkpoint object that reads ``model``'s weights out of a training checkpoint.

    A Keras 3 model is not a TensorFlow trackable of its own: a training checkpoint reaches
    its weights through the optimizer's list of the variables it trains (``Trainer``
    builds it on ``model.trainable_variables``). So an optimizer built the same way stands
    in for the trainer's; its own slots are left unread (restore with ``partial``)."""
    import keras

    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return tf.train.Checkpoint(model=model, optimizer=optimizer)


def restore_newest(checkpoint: tf.train.Checkpoint, folder: str | Path, partial: bool = False) -> str | None:
    """Restore ``checkpoint`` from the newest readable checkpoint in ``folder``; return its
    path, or None when the folder has none.

    A damaged newest checkpoint (say, a disk error) falls back to the one before it, with
    a note on stderr; when all are damaged, or none matches the objects, this raises
    :class:`SeqkitError`. ``partial``: the checkpoint may hold more than ``checkpoint``
    restores (a model's weights out of a training checkpoint).
    """
    folder = Path(folder)
    state = tf.train.get_checkpoint_state(str(folder))
    paths = list(state.all_model_checkpoint_paths) if state is not None else []
    failures = []
    for path in reversed(paths):
        try:
            status = checkpoint.restore(path)
            if partial:
                status.expect_partial()
            status.assert_existing_objects_matched()
        except Exception as err:  # noqa: BLE001 (a damaged file fails in many ways inside TF)
            failures.append(f"{Path(path).name} ({type(err).__name__})")
            continue
        if failures:
            print(f"note: skipped unreadable checkpoints {', '.join(failures)}; resumed from {path}.", file=sys.stderr)
        return path
    if failures:
        raise SeqkitError(
            f"Cannot resume from {folder}: its checkpoints {', '.join(failures)} are damaged or do "
            "not match this model; use another `checkpoint_dir`, or start over (`fresh`)."
        )
    return None
