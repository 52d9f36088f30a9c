"""A text corpus as integer ids, and its tf.data windows.

The file is read in chunks cut at line ends (or between two ASCII bytes), each chunk
checked as UTF-8 (to name the byte offset of the first bad byte), NFC-normalized with
tensorflow-text and split into code points with ``tf.strings.unicode_decode``. A first pass
collects the training part's characters (the vocabulary); a second writes ids into one
array, so memory stays near the size of that array (2 bytes a character for vocabularies
under 65,536), not of Python strings.

Training windows hold ``seq_len + 1`` ids (inputs and the targets shifted by one). Each
epoch shifts all window starts by a random offset below ``seq_len`` and visits them in a
random order, both drawn from (seed, epoch); the stream of windows is therefore a pure
function of the global step, which is how a resumed run finds its data position.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqkit.errors import SeqkitError
from seqkit.text.vocab import Vocabulary

CHUNK_BYTES = 2 << 20  # temporaries per chunk are ~30x its size


def _chunks(data, begin: int = 0, size: int = CHUNK_BYTES) -> list[tuple[int, int]]:
    """(start, end) byte ranges of UTF-8 ``data`` cut where no character or NFC sequence spans:
    after a line end, else between two ASCII bytes, else between two characters that NFC
    leaves apart (so one huge line without ASCII is still read in pieces)."""
    ranges, start, n = [], begin, len(data)
    while start < n:
        end = min(n, start + size)
        if end < n:
            cut = data.rfind(b"\n", start, end) + 1
            if cut <= start:
                cut = next((i for i in range(end, start + 1, -1) if data[i - 1] < 0x80 and data[i] < 0x80), 0)
            if cut <= start:
                cut = _character_cut(data, start, end)
            end = cut if cut > start else n
        ranges.append((start, end))
        start = end
    return ranges


def _character_cut(data, start: int, end: int, reach: int = 256) -> int:
    """The last offset in (start, end] that begins a character which NFC neither combines nor
    composes with the one before it; 0 when there is none within ``reach`` bytes."""
    import unicodedata

    lead = [i for i in range(max(start, end - reach), end + 1) if i < len(data) and data[i] & 0xC0 != 0x80]
    for before, at, after in reversed(list(zip(lead, lead[1:], lead[2:]))):
        if before <= start:
            continue
        try:
            prev, char = data[before:at].decode("utf-8"), data[at:after].decode("utf-8")
        except UnicodeDecodeError:
            return 0  # invalid text: the reader names the bad byte when it decodes the chunk
        if unicodedata.combining(char) == 0 and unicodedata.normalize("NFC", prev + char) == prev + char:
            return at
    return 0


def _points(chunk: bytes, offset: int, name: str, normalization: str) -> np.ndarray:
    import tensorflow as tf
    import tensorflow_text as tf_text

    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SeqkitError(
            f"{name} is not UTF-8 text: byte offset {offset + err.start} cannot be decoded; if the "
            "file uses another encoding, name it with `encoding` (e.g. latin-1, cp1252, utf-16)."
        ) from None
    text = tf.constant(chunk)
    if normalization == "NFC":
        text = tf_text.normalize_utf8(text, "NFC")
    return tf.strings.unicode_decode(text, "UTF-8").numpy().astype(np.uint32)


@dataclass
class Corpus:
    """A text as ids: ``ids[:split]`` trains, ``ids[split:]`` validates."""

    ids: np.ndarray
    split: int
    vocab: Vocabulary

    @property
    def train_ids(self) -> np.ndarray:
        return self.ids[: self.split]

    @property
    def val_ids(self) -> np.ndarray:
        return self.ids[self.split :]


def read_corpus(
    path: str | os.PathLike,
    val_fraction: float = 0.1,
    normalization: str = "NFC",
    encoding: str = "utf-8",
    vocab: Vocabulary | None = None,
) -> Corpus:
    """Read a text file into ids, with a vocabulary from its training part (or ``vocab``)."""
    path = Path(path)
    if not 0.0 <= val_fraction < 1.0:
        raise SeqkitError(f"`val_fraction` must be in [0, 1), got {val_fraction}.")
    if not path.is_file():
        raise SeqkitError(f"{path} does not exist or is not a file.")
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise SeqkitError(f"{path} is empty: give a text file to learn from.")
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as err:
        raise SeqkitError(f"Cannot read {path}: {err.strerror or err}.") from None
    if encoding.replace("-", "").replace("_", "").lower() not in ("utf8", "utf8sig"):
        data = _recode(data, path, encoding)
    try:
        return _encode(data, path, val_fraction, normalization, vocab)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def _recode(data, path: Path, encoding: str) -> bytes:
    try:
        return bytes(data).decode(encoding).encode("utf-8")
    except LookupError:
        raise SeqkitError(f"Unknown `encoding` {encoding!r}: use a Python codec name such as latin-1.") from None
    except UnicodeDecodeError as err:
        raise SeqkitError(
            f"{path} is not {encoding} text: byte offset {err.start} cannot be decoded; check `encoding`."
        ) from None


def _encode(data, path: Path, val_fraction: float, normalization: str, vocab: Vocabulary | None) -> Corpus:
    skip = 3 if data[:3] == b"\xef\xbb\xbf" else 0  # a UTF-8 byte-order mark is not text
    pieces = _chunks(data, begin=skip)

    def points(start: int, end: int) -> np.ndarray:
        return _points(data[start:end], start, str(path), normalization)

    # Pass 1: length, and the characters of each piece.
    lengths, uniques = [], []
    for start, end in pieces:
        piece = points(start, end)
        lengths.append(len(piece))
        uniques.append(np.unique(piece))
    total = sum(lengths)
    split = total - int(round(total * val_fraction))
    if vocab is None:
        seen, done = [], 0
        for (start, end), n, unique in zip(pieces, lengths, uniques):
            if done + n <= split:
                seen.append(unique)
            elif done < split:
                seen.append(np.unique(points(start, end)[: split - done]))
            done += n
        if not seen:
            raise SeqkitError(f"{path} has no text to train on: lower `val_fraction`.")
        vocab = Vocabulary.from_points(np.concatenate(seen), normalization)
    # Pass 2: ids.
    ids = np.empty(total, dtype=np.uint16 if vocab.size <= 1 << 16 else np.int32)
    done = 0
    for (start, end), n in zip(pieces, lengths):
        ids[done : done + n] = vocab.ids_of_points(points(start, end))
        done += n
    return Corpus(ids, split, vocab)


def windows_per_epoch(n_ids: int, seq_len: int) -> int:
    """Windows of ``seq_len + 1`` ids in one epoch: as many as fit at any start offset below
    ``seq_len``, and at least one when the text holds one window at all."""
    if n_ids < seq_len + 1:
        return 0
    return max(1, (n_ids - seq_len) // seq_len)


def window_starts(n_ids: int, seq_len: int, seed: int, epoch: int) -> np.ndarray:
    """Start index of every training window of one epoch, in that epoch's order."""
    count = windows_per_epoch(n_ids, seq_len)
    rng = np.random.default_rng([seed, epoch])
    offset = int(rng.integers(min(seq_len, n_ids - count * seq_len)))
    return offset + seq_len * rng.permutation(count)


def train_windows(ids: np.ndarray, seq_len: int, batch_size: int, seed: int, start_step: int = 0):
    """Endless (inputs, targets) batches [batch, seq_len] from global step ``start_step`` on.

    Windows are cut from ``ids`` in NumPy as each batch is needed, so the corpus is held
    once, not copied into a TensorFlow constant.
    """
    import tensorflow as tf

    per_epoch = windows_per_epoch(len(ids), seq_len)
    if per_epoch < 1:
        raise SeqkitError(
            f"The training text has {len(ids)} characters, fewer than one window of "
            f"`seq_len` {seq_len} + 1: use a longer corpus or a smaller `seq_len`."
        )
    offsets = np.arange(seq_len + 1)

    def batches():
        position = start_step * batch_size
        epoch, index = divmod(position, per_epoch)
        pending = np.empty(0, np.int64)
        while True:
            starts = window_starts(len(ids), seq_len, seed, epoch)[index:]
            pending = np.concatenate([pending, starts])
            while len(pending) >= batch_size:
                yield ids[pending[:batch_size, None] + offsets].astype(np.int32)
                pending = pending[batch_size:]
            epoch, index = epoch + 1, 0

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
        return ids if len(ids) <= limit else ids[:limit]
    blocks = limit // VAL_BLOCK
    starts = np.linspace(0, len(ids) - VAL_BLOCK, blocks).astype(np.int64)
    return np.concatenate([ids[s : s + VAL_BLOCK] for s in starts])


def eval_windows(ids: np.ndarray, seq_len: int, batch_size: int):
    """Consecutive, non-overlapping windows over all of ``ids`` (shorter if ``ids`` is short)."""
    import tensorflow as tf

    seq_len = min(seq_len, len(ids) - 1)
    if seq_len < 1:
        raise SeqkitError("The validation text is shorter than two characters: raise `val_fraction`.")
    starts = np.arange((len(ids) - 1) // seq_len) * seq_len
    windows = ids[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(windows).batch(batch_size).map(_split)


def _split(window):
    """A window of seq_len + 1 ids -> (inputs, targets shifted by one)."""
    return window[..., :-1], window[..., 1:]
