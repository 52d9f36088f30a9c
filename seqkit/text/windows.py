"""Training and evaluation windows over a corpus of ids, as tf.data datasets.

Training windows hold ``seq_len + 1`` ids (inputs and the targets shifted by one). Each
epoch shifts all window starts by a random offset below ``seq_len`` and visits them in a
random order. The order is a keyed bijection of the window indexes (a small Feistel
network), so the window at any position of any epoch is computed on its own: nothing
the size of the corpus is held (a corpus of billions of characters is read through a
memory map), and the stream of windows is a pure function of the global step, which is
how a resumed run finds its data position. Offset and key are drawn from (seed, epoch).

An evaluation reads a fixed sample of the held-out text (:func:`validation_sample`), cut
into consecutive windows as it goes.
"""

from __future__ import annotations

import functools

import numpy as np

from seqkit.errors import SeqkitError

ROUNDS = 4
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a well-spread 64-bit hash, elementwise (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def permute(index: np.ndarray, count: int, keys: np.ndarray) -> np.ndarray:
    """A pseudo-random bijection of ``[0, count)`` applied to ``index``: a Feistel network on
    the smallest even number of bits that holds ``count``, applied again to values that fall
    outside (cycle walking, under four times on average)."""
    half = max(1, ((count - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)

    def once(x: np.ndarray) -> np.ndarray:
        left, right = x >> shift, x & mask
        for key in keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << shift) | right

    x = np.asarray(index, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = once(x)
        outside = x >= count
        while outside.any():
            x[outside] = once(x[outside])
            outside = x >= count
    return x.astype(np.int64)


def windows_per_epoch(n_ids: int, seq_len: int) -> int:
    """Windows of ``seq_len + 1`` ids in one epoch: as many as fit at any start offset below
    ``seq_len``, and at least one when the text holds one window at all."""
    if n_ids < seq_len + 1:
        return 0
    return max(1, (n_ids - seq_len) // seq_len)


@functools.lru_cache(maxsize=4)  # asked once a batch: a generator is made once an epoch
def _epoch(n_ids: int, seq_len: int, seed: int, epoch: int) -> tuple[int, np.ndarray]:
    """This epoch's start offset and permutation keys."""
    count = windows_per_epoch(n_ids, seq_len)
    rng = np.random.default_rng([seed, epoch])
    offset = int(rng.integers(min(seq_len, n_ids - count * seq_len)))
    keys = rng.integers(0, 1 << 63, size=ROUNDS, dtype=np.uint64)
    keys.flags.writeable = False  # cached: shared by every caller
    return offset, keys


def window_starts(n_ids: int, seq_len: int, seed: int, epoch: int, index: np.ndarray | None = None) -> np.ndarray:
    """Start of the training windows at positions ``index`` of one epoch (all of them, in
    that epoch's order, when None)."""
    count = windows_per_epoch(n_ids, seq_len)
    offset, keys = _epoch(n_ids, seq_len, seed, epoch)
    index = np.arange(count) if index is None else np.asarray(index)
    return offset + seq_len * permute(index, count, keys)


def train_windows(ids: np.ndarray, seq_len: int, batch_size: int, seed: int, start_step: int = 0):
    """Endless (inputs, targets) batches [batch, seq_len] from global step ``start_step`` on.

    Each batch is cut from ``ids`` (an array or a memory map) as it is needed.
    """
    import tensorflow as tf

    n_ids = len(ids)
    per_epoch = windows_per_epoch(n_ids, seq_len)
    if per_epoch < 1:
        raise SeqkitError(
            f"The training text has {n_ids} characters, fewer than one window of "
            f"`seq_len` {seq_len} + 1: use a longer corpus or a smaller `seq_len`."
        )
    offsets = np.arange(seq_len + 1)

    def batches():
        position = start_step * batch_size
        while True:
            epochs, index = np.divmod(position + np.arange(batch_size), per_epoch)
            starts = np.empty(batch_size, np.int64)
            for epoch in np.unique(epochs):  # a batch straddles at most two epochs
                chosen = epochs == epoch
                starts[chosen] = window_starts(n_ids, seq_len, seed, int(epoch), index[chosen])
            yield np.asarray(ids[starts[:, None] + offsets], dtype=np.int32)
            position += batch_size

    spec = tf.TensorSpec([batch_size, seq_len + 1], tf.int32)
    windows = tf.data.Dataset.from_generator(batches, output_signature=spec)
    return windows.map(_split).prefetch(tf.data.AUTOTUNE)


VAL_BLOCK = 4096  # characters of a block of the validation sample


def validation_sample(ids: np.ndarray, limit: int) -> np.ndarray:
    """The held-out ids an evaluation reads: all of them up to ``limit`` characters; beyond
    it, ``limit // VAL_BLOCK`` blocks of VAL_BLOCK characters spread evenly over them (the
    same blocks every evaluation and every run), so that an evaluation of a huge corpus
    takes as long as one of a small one."""
    if len(ids) <= limit or limit < VAL_BLOCK:
        return np.asarray(ids if len(ids) <= limit else ids[:limit])
    blocks = limit // VAL_BLOCK
    starts = np.linspace(0, len(ids) - VAL_BLOCK, blocks).astype(np.int64)
    return np.concatenate([ids[s : s + VAL_BLOCK] for s in starts])


def eval_windows(ids: np.ndarray, seq_len: int, batch_size: int):
    """Consecutive, non-overlapping windows over all of ``ids`` (shorter if ``ids`` is
    short), cut batch by batch."""
    import tensorflow as tf

    seq_len = min(seq_len, len(ids) - 1)
    if seq_len < 1:
        raise SeqkitError("The validation text is shorter than two characters: raise `val_fraction`.")
    text = tf.constant(np.asarray(ids, dtype=np.int32))
    offsets = tf.range(seq_len + 1, dtype=tf.int64)
    starts = tf.data.Dataset.range((len(ids) - 1) // seq_len).map(lambda i: i * seq_len)
    return starts.batch(batch_size).map(lambda s: _split(tf.gather(text, s[:, None] + offsets)))


def _split(window):
    """A window of seq_len + 1 ids -> (inputs, targets shifted by one)."""
    return window[..., :-1], window[..., 1:]
