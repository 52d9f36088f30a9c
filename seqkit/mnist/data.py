"""MNIST: IDX (raw or gzip) and Keras ``mnist.npz`` readers, and the row-sequence tf.data input.

Each 28x28 image is read as 28 time steps of 28 features (pixel / 255).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqkit import datasets
from seqkit.errors import SeqkitError

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode an IDX file's bytes, checking the magic number and the size the header promises."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise SeqkitError(f"{name} is not an IDX file (bad magic number): replace it.")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SeqkitError(f"{name} is truncated inside its header: replace it.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise SeqkitError(f"{name} is {state} ({len(data)} bytes, header promises {expected}): replace it.")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed."""
    path = Path(path)
    if not path.is_file():
        raise SeqkitError(f"{path} does not exist.")
    return parse_idx(datasets.read_maybe_gzip(path), str(path))


@dataclass
class Mnist:
    """uint8 images [N, 28, 28] and uint8 labels [N] for the training and test splits."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
                raise SeqkitError(
                    f"MNIST {split} data has images {images.shape} and labels {labels.shape}; "
                    "expected [N, 28, 28] and [N]: replace the files."
                )
            if labels.size and int(labels.max()) > 9:
                raise SeqkitError(f"MNIST {split} labels go above 9: replace the files.")


def read_mnist_npz(path: str | os.PathLike) -> Mnist:
    """Read Keras's ``mnist.npz`` (keys x_train, y_train, x_test, y_test)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, KeyError, ValueError) as err:
        raise SeqkitError(f"{path} is not a readable mnist.npz ({err}): replace it.") from None
    return Mnist(*(a.astype(np.uint8) for a in arrays))


def load_mnist(root: str | os.PathLike | None = None) -> Mnist:
    """MNIST from the data directory, verified by checksum; downloaded when missing.

    Uses the four IDX files; where none of them is stored but Keras's ``mnist.npz`` is,
    uses that instead.
    """
    if not any(datasets.find("mnist", f, root) for f in IDX_FILES.values()):
        if datasets.find("mnist-npz", "mnist.npz", root):
            return read_mnist_npz(io.BytesIO(datasets.load_bytes("mnist-npz", "mnist.npz", root)))
    arrays = {
        key: parse_idx(datasets.load_bytes("mnist", name, root), f"mnist/{name}") for key, name in IDX_FILES.items()
    }
    return Mnist(**arrays)


def row_sequences(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    train: bool,
    seed: int | None = None,
):
    """A tf.data pipeline of (rows [batch, 28, 28] float32 in [0, 1], labels) batches.

    Training input is shuffled each pass, repeats forever and drops the last partial batch
    (static shapes keep XLA to one compilation); evaluation input is one ordered pass.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if train:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=train)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
