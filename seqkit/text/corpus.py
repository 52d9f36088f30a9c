"""A text corpus as integer ids: read in a streaming pass, encoded once, memory-mapped.

Each document (:mod:`seqkit.text.documents`) is memory-mapped (a file in another encoding
is first transcoded to UTF-8 in a temporary file) and read in chunks cut where no
character or NFC sequence spans; each chunk is checked as UTF-8 (so an error names the
byte offset of the first bad byte), NFC-normalized and split into code points. A first
pass counts each chunk's characters; the vocabulary is the training part's (the text
before the last ``val_fraction``). A second pass writes the ids, in the smallest unsigned
integer type the vocabulary allows, into an array: in memory (:func:`read_corpus`), or a
``.npy`` file of a run folder (:class:`EncodedCorpus`) that training memory-maps, reuses
while its sources are unchanged and writes anew when they change. Either way, memory
holds a chunk at a time, not the text.
"""

from __future__ import annotations

import codecs
import mmap
import os
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_path, read_json, write_json
from seqkit.text.documents import Documents
from seqkit.text.vocab import Vocabulary, codepoints, describe

CHUNK_BYTES = 2 << 20
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark is not text
NEWLINE = np.array([ord("\n")], np.uint32)  # ends a document that lacks it


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


def _points(chunk: bytes, offset: int, name: Path, normalization: str) -> np.ndarray:
    """The code points of one chunk of UTF-8 (uint8 for ASCII, uint32 otherwise)."""
    if chunk.isascii():  # ASCII is valid UTF-8 and NFC as it is
        return np.frombuffer(chunk, np.uint8)
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SeqkitError(
            f"{name} is not UTF-8 text: byte offset {offset + err.start} cannot be decoded; if the "
            "file uses another encoding, name it with `encoding` (e.g. latin-1, cp1252, utf-16)."
        ) from None
    if normalization == "NFC" and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return codepoints(text)


def _is_utf8(encoding: str) -> bool:
    return encoding.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig")


@contextmanager
def _utf8(path: Path, encoding: str) -> Iterator[bytes | mmap.mmap]:
    """A document's bytes as UTF-8: the file memory-mapped, or a transcoded temporary copy."""
    if not path.is_file():
        raise SeqkitError(f"{path} does not exist or is not a file.")
    try:
        with open(path, "rb") as f:
            data = _map(f) if _is_utf8(encoding) else _transcode(f, path, encoding)
    except OSError as err:
        raise SeqkitError(f"Cannot read {path}: {err.strerror or err}.") from None
    try:
        yield data
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def _map(f) -> bytes | mmap.mmap:
    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""


def _transcode(f, path: Path, encoding: str) -> bytes | mmap.mmap:
    """The file decoded from ``encoding`` a block at a time into an anonymous UTF-8 file."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise SeqkitError(f"Unknown `encoding` {encoding!r}: use a Python codec name such as latin-1.") from None
    with tempfile.TemporaryFile() as out:
        offset = 0
        while True:
            block = f.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                out.write(decoder.decode(block, final=not block).encode("utf-8", "surrogatepass"))
            except UnicodeDecodeError as err:
                raise SeqkitError(
                    f"{path} is not {encoding} text: byte offset {offset - pending + err.start} cannot be "
                    "decoded; check `encoding`."
                ) from None
            offset += len(block)
            if not block:
                break
        out.flush()
        return _map(out)


def _read(documents: Documents, normalization: str) -> Iterator[tuple[tuple[int, int, int], int, np.ndarray]]:
    """((document, start, end), bytes, code points) of each chunk of each document in order;
    a newline that a document lacks comes as a chunk of its own (start = end = -1)."""
    for number, path in enumerate(documents.files):
        with _utf8(path, documents.encoding) as data:
            skip = len(BOM) if data[:3] == BOM else 0
            if not documents.terminate and len(data) <= skip:
                raise SeqkitError(f"{path} is empty: give a text file to learn from.")
            for start, end in _chunks(data, begin=skip):
                yield (number, start, end), end - start, _points(data[start:end], start, path, normalization)
            ends_a_line = data[-1:] == b"\n"
        if documents.terminate and not ends_a_line:
            yield (number, -1, -1), 0, NEWLINE


def _piece(documents: Documents, place: tuple[int, int, int], normalization: str) -> np.ndarray:
    """The code points of one chunk, read again."""
    number, start, end = place
    if start < 0:
        return NEWLINE
    path = documents.files[number]
    with _utf8(path, documents.encoding) as data:
        return _points(data[start:end], start, path, normalization)


def _characters(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct code points of a chunk and how often each occurs."""
    counts = np.bincount(points)
    present = np.flatnonzero(counts)
    return present.astype(np.uint32), counts[present]


Progress = Callable[[int], None]  # told the bytes read so far


@dataclass
class Scan:
    """What the first pass learned of a text: each chunk's place, length and characters."""

    documents: Documents
    normalization: str
    val_fraction: float
    places: list[tuple[int, int, int]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    characters: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.lengths)

    @property
    def split(self) -> int:
        """Where the validation tail starts."""
        return self.total - int(round(self.total * self.val_fraction))

    def train_points(self) -> np.ndarray:
        """The distinct code points of the training part."""
        seen, done, split = [], 0, self.split
        for place, n, (points, _) in zip(self.places, self.lengths, self.characters):
            if done + n <= split:
                seen.append(points)
            elif done < split:
                seen.append(np.unique(_piece(self.documents, place, self.normalization)[: split - done]))
            done += n
        if not seen:
            raise SeqkitError("The text has no part to train on: lower `val_fraction`.")
        return np.unique(np.concatenate(seen))

    def vocabulary(self, base: Vocabulary | None = None, extend: bool = False) -> Vocabulary:
        """The training part's characters; a base model's vocabulary, with the training
        part's new characters added where ``extend``."""
        if base is None:
            return Vocabulary.from_points(self.train_points(), self.normalization)
        if not extend:
            return base
        return Vocabulary.from_points(np.union1d(base.points, self.train_points()), base.normalization)

    def unseen(self, vocab: Vocabulary) -> dict[str, int]:
        """Each character of the whole text that ``vocab`` lacks, with its count."""
        counts: Counter = Counter()
        known = np.asarray(vocab.points, np.uint32)
        for points, number in self.characters:
            new = ~np.isin(points, known)
            counts.update(dict(zip(map(chr, points[new].tolist()), number[new].tolist())))
        return dict(sorted(counts.items()))

    def in_memory(self, vocab: Vocabulary) -> Corpus:
        """The second pass into an array in memory."""
        ids = np.empty(self.total, id_type(vocab))
        self.write(vocab, ids)
        return Corpus(ids, self.split, vocab, self.unseen(vocab))

    def write(self, vocab: Vocabulary, ids: np.ndarray, progress: Progress | None = None) -> None:
        """The second pass: the text's ids into ``ids`` (of length ``total``)."""
        lookup = _lookup(vocab, ids.dtype)
        done, read = 0, 0
        for (place, size, points), n in zip(_read(self.documents, self.normalization), self.lengths):
            if len(points) != n:
                path = self.documents.files[place[0]]
                raise SeqkitError(f"{path} changed while it was read: run again once it is complete.")
            ids[done : done + n] = lookup(points)
            done, read = done + n, read + size
            if progress is not None:
                progress(read)
        if done != len(ids):
            raise SeqkitError("A file of the corpus shrank while it was read: run again once it is complete.")


def scan(
    documents: Documents, normalization: str = "NFC", val_fraction: float = 0.1, progress: Progress | None = None
) -> Scan:
    """The first pass over ``documents``."""
    if not 0.0 <= val_fraction < 1.0:
        raise SeqkitError(f"`val_fraction` must be in [0, 1), got {val_fraction}.")
    result, read = Scan(documents, normalization, val_fraction), 0
    for place, size, points in _read(documents, normalization):
        result.places.append(place)
        result.lengths.append(len(points))
        result.characters.append(_characters(points))
        read += size
        if progress is not None:
            progress(read)
    return result


def id_type(vocab: Vocabulary) -> np.dtype:
    """The smallest unsigned integer type that holds every id of ``vocab``."""
    return np.dtype(next(t for t in (np.uint8, np.uint16, np.uint32) if vocab.size <= np.iinfo(t).max + 1))


def _lookup(vocab: Vocabulary, dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """Code points -> ids through one table indexed by code point (0 where unknown)."""
    known = np.asarray(vocab.points, np.int64)
    table = np.zeros(max(256, int(known.max(initial=0)) + 1), dtype)
    table[known] = np.arange(1, len(known) + 1)

    def ids(points: np.ndarray) -> np.ndarray:
        if points.dtype == np.uint8 or int(points.max(initial=0)) < len(table):
            return table[points]
        inside = points < len(table)
        out = np.zeros(len(points), dtype)
        out[inside] = table[points[inside]]
        return out

    return ids


@dataclass
class Corpus:
    """A text as ids: ``ids[:split]`` trains, ``ids[split:]`` validates.

    Args:
        ids: the ids, in memory or memory-mapped.
        split: where the validation tail starts.
        vocab: the vocabulary the ids are of.
        unseen: characters of the text the vocabulary lacks (read as the unknown id), counted.
    """

    ids: np.ndarray
    split: int
    vocab: Vocabulary
    unseen: dict[str, int] = field(default_factory=dict)

    @property
    def train_ids(self) -> np.ndarray:
        return self.ids[: self.split]

    @property
    def val_ids(self) -> np.ndarray:
        return self.ids[self.split :]

    def describe_unseen(self) -> str | None:
        """The unseen characters in a sentence, or None."""
        if not self.unseen:
            return None
        return (
            f"{sum(self.unseen.values()):,} characters of the corpus ({len(self.unseen)} distinct: "
            f"{describe(list(self.unseen))}) were never seen by the base model: they are read as its unknown character."
        )


def read_corpus(
    path: str | os.PathLike,
    val_fraction: float = 0.1,
    normalization: str = "NFC",
    encoding: str = "utf-8",
    vocab: Vocabulary | None = None,
) -> Corpus:
    """Read a text file into ids in memory, with a vocabulary from its training part (or ``vocab``)."""
    text = scan(Documents([Path(path)], encoding=encoding, terminate=False), normalization, val_fraction)
    return text.in_memory(vocab or text.vocabulary())


def _record(path: Path) -> dict | None:
    """An encoding's record (``corpus.json``); None where it is missing or damaged."""
    if not path.is_file():
        return None
    try:
        return read_json(path, "encoded corpus record")
    except SeqkitError:
        return None  # damaged: encoded anew


def _mapped(ids_path: Path, saved: dict) -> Corpus | None:
    """The corpus that ``saved`` records, its ids memory-mapped from ``ids_path``; None where
    the ids are missing or do not match the record."""
    if not ids_path.is_file():
        return None
    try:
        ids = np.load(ids_path, mmap_mode="r")
        vocab = Vocabulary(tuple(map(ord, saved["vocab"])), saved["normalization"])
        if ids.shape != (saved["total"],) or ids.dtype != id_type(vocab):
            return None
        return Corpus(ids, saved["split"], vocab, saved.get("unseen", {}))
    except (OSError, ValueError, KeyError, TypeError, SeqkitError):
        return None  # damaged: encoded anew


def saved_corpus(folder: str | os.PathLike) -> Corpus | None:
    """The encoded corpus a run folder keeps, whatever its sources are now; None where
    there is none or it is damaged. For readers of a finished run (an export measuring
    its held-out text), which have no documents to compare."""
    saved = _record(Path(folder) / EncodedCorpus.META)
    return None if saved is None else _mapped(Path(folder) / EncodedCorpus.IDS, saved)


class EncodedCorpus:
    """A run folder's encoded corpus: ``corpus.npy`` (the ids) and ``corpus.json`` (what
    they were made from: each source's path, size and modification time, the reading
    settings and the vocabulary asked for).

    Args:
        folder: the run folder.
        documents: the sources.
        normalization: ``NFC`` or ``none``.
        val_fraction: the held-out tail.
        base: a base model's vocabulary (fine-tuning), else None.
        extend: add the text's new characters to ``base``.
    """

    IDS, META = "corpus.npy", "corpus.json"

    def __init__(
        self,
        folder: Path,
        documents: Documents,
        normalization: str,
        val_fraction: float,
        base: Vocabulary | None = None,
        extend: bool = False,
    ):
        self.ids_path, self.meta_path = Path(folder) / self.IDS, Path(folder) / self.META
        self.documents, self.base, self.extend = documents, base, extend
        self.normalization, self.val_fraction = normalization, val_fraction
        self.key = {
            "sources": documents.sources(),
            "encoding": documents.encoding,
            "terminate": documents.terminate,
            "normalization": normalization,
            "val_fraction": val_fraction,
            "base": None if base is None else "".join(base.chars),
            "extend": extend,
        }

    @property
    def stale(self) -> bool:
        """An encoding is there, of other sources or settings."""
        saved = _record(self.meta_path)
        return saved is not None and saved.get("key") != self.key

    def load(self) -> Corpus | None:
        """The saved encoding where it was made from these sources and settings, else None."""
        saved = _record(self.meta_path)
        return _mapped(self.ids_path, saved) if saved is not None and saved.get("key") == self.key else None

    def scan(self, progress: Progress | None = None) -> Scan:
        return scan(self.documents, self.normalization, self.val_fraction, progress)

    def write(self, text: Scan, vocab: Vocabulary, progress: Progress | None = None) -> Corpus:
        """Write the ids of ``text`` and their record; return the corpus, memory-mapped."""
        self.meta_path.unlink(missing_ok=True)  # no record of ids being replaced
        with atomic_path(self.ids_path, suffix=".npy") as tmp:
            try:
                ids = np.lib.format.open_memmap(tmp, mode="w+", dtype=id_type(vocab), shape=(text.total,))
                text.write(vocab, ids, progress)
                ids.flush()
                del ids
                changed = [new for new, old in zip(self.documents.sources(), self.key["sources"]) if new != old]
                if changed:  # grown or touched since the first pass began: its ids may not match it
                    raise SeqkitError(f"{changed[0][0]} changed while it was read: run again once it is complete.")
            except OSError as err:
                raise SeqkitError(f"Cannot write {self.ids_path} ({err.strerror or err}): free disk space.") from None
        unseen = text.unseen(vocab) if self.base is not None else {}
        record = {"vocab": "".join(vocab.chars), "normalization": vocab.normalization, "total": text.total}
        write_json(self.meta_path, {"key": self.key, **record, "split": text.split, "unseen": unseen})
        return Corpus(np.load(self.ids_path, mmap_mode="r"), text.split, vocab, unseen)
