"""The encoded corpus of a run folder: the same ids as reading in memory, memory-mapped
windows equal to in-memory ones, reused while the sources are unchanged and encoded anew
when they change, and the keyed window order a bijection that needs no permutation array."""

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqkit.errors import SeqkitError
from seqkit.text.corpus import EncodedCorpus, id_type, read_corpus
from seqkit.text.documents import collect
from seqkit.text.vocab import Vocabulary
from seqkit.text.windows import permute, train_windows, window_starts, windows_per_epoch

SENTENCE = "the quick brown fox jumps over the lazy dog. "


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "texts"
    root.mkdir()
    (root / "a.txt").write_text("Ünïcödé " + SENTENCE * 40, encoding="utf-8")
    (root / "b.txt").write_text("中文 " * 30 + "\n", encoding="utf-8")
    (root / "c.txt").write_bytes(b"")  # an empty document: a newline
    return root


def _encoded(folder, out, **settings) -> EncodedCorpus:
    return EncodedCorpus(out, collect([folder]), settings.pop("normalization", "NFC"), 0.1, **settings)


def _encode(store: EncodedCorpus):
    text = store.scan()
    return store.write(text, text.vocabulary())


def test_the_encoded_corpus_equals_the_text_read_in_memory(folder, tmp_path):
    corpus = _encode(_encoded(folder, tmp_path / "run"))
    assert isinstance(corpus.ids, np.memmap) and corpus.ids.dtype == np.uint8  # 50 characters: one byte each
    joined = tmp_path / "joined.txt"
    joined.write_text("".join(p.read_text(encoding="utf-8").rstrip("\n") + "\n" for p in sorted(folder.iterdir())))
    in_memory = read_corpus(joined)
    np.testing.assert_array_equal(corpus.ids, in_memory.ids)
    assert corpus.vocab == in_memory.vocab and corpus.split == in_memory.split
    # The windows of training read through the memory map are those of the array in memory.
    mapped = [x.numpy() for x, _ in train_windows(corpus.train_ids, 16, 8, seed=3, start_step=5).take(30)]
    held = [x.numpy() for x, _ in train_windows(np.array(in_memory.train_ids), 16, 8, seed=3, start_step=5).take(30)]
    np.testing.assert_array_equal(mapped, held)


def test_the_encoding_is_reused_until_a_source_changes(folder, tmp_path):
    out = tmp_path / "run"
    assert _encoded(folder, out).load() is None and not _encoded(folder, out).stale
    first = _encode(_encoded(folder, out))
    again = _encoded(folder, out).load()
    assert again is not None and np.array_equal(again.ids, first.ids)
    assert _encoded(folder, out, normalization="none").stale  # other settings: encoded anew
    (folder / "b.txt").write_text("中文 " * 31 + "\n", encoding="utf-8")  # a source changed
    assert _encoded(folder, out).load() is None and _encoded(folder, out).stale
    (folder / "new.txt").write_text("more", encoding="utf-8")  # a source added
    store = _encoded(folder, out)
    assert store.load() is None and store.stale
    assert len(_encode(store).ids) == len(first.ids) + 3 + 5
    (out / "corpus.npy").write_bytes(b"\x00garbage")  # damaged ids: encoded anew, not an error
    assert _encoded(folder, out).load() is None


def test_the_id_type_is_the_smallest_that_holds_the_vocabulary():
    assert id_type(Vocabulary(tuple(range(255)))) == np.uint8
    assert id_type(Vocabulary(tuple(range(256)))) == np.uint16
    assert id_type(Vocabulary(tuple(range(70_000)))) == np.uint32


def test_a_base_vocabulary_is_kept_or_extended_and_unseen_characters_counted(folder, tmp_path):
    base = Vocabulary.from_points(np.frombuffer(SENTENCE.encode(), np.uint8).astype(np.uint32))
    kept = _encoded(folder, tmp_path / "kept", base=base)
    corpus = kept.write(text := kept.scan(), text.vocabulary(base))
    assert corpus.vocab == base and corpus.unseen["中"] == 30 and corpus.unseen["Ü"] == 1
    assert "characters of the corpus (" in corpus.describe_unseen()
    extended = _encoded(folder, tmp_path / "extended", base=base, extend=True)
    text = extended.scan()
    vocab = text.vocabulary(base, extend=True)
    assert set(base.chars) < set(vocab.chars) and "Ü" in vocab.chars
    assert not _encoded(folder, tmp_path / "kept", base=base, extend=True).load()  # another key


def test_a_file_that_changes_while_it_is_read_is_named(folder, tmp_path):
    store = _encoded(folder, tmp_path / "run")
    text = store.scan()
    (folder / "a.txt").write_text(SENTENCE, encoding="utf-8")
    with pytest.raises(SeqkitError, match="a.txt changed while it was read"):
        store.write(text, text.vocabulary())
    assert not (tmp_path / "run" / "corpus.npy").exists()


@given(st.integers(1, 5000), st.integers(0, 2**32))
def test_the_window_order_is_a_bijection(count, key):
    keys = np.random.default_rng(key).integers(0, 1 << 63, size=4, dtype=np.uint64)
    order = permute(np.arange(count), count, keys)
    assert sorted(order.tolist()) == list(range(count))


def test_windows_at_any_position_need_no_permutation_of_the_epoch():
    n_ids, seq_len = 10_000_019, 64
    count = windows_per_epoch(n_ids, seq_len)
    some = np.array([0, 1, count // 2, count - 1])
    everything = window_starts(n_ids, seq_len, seed=5, epoch=2)
    np.testing.assert_array_equal(window_starts(n_ids, seq_len, 5, 2, some), everything[some])
    assert len(np.unique(everything)) == count  # each window once


def test_a_text_in_another_encoding_is_read_as_it_streams(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(("caf\u00e9 cr\u00e8me\n" * 100_000).encode("latin-1"))
    corpus = read_corpus(path, val_fraction=0, encoding="latin-1")
    assert corpus.vocab.decode(corpus.ids[:22]) == "caf\u00e9 cr\u00e8me\n" * 2
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"x" * (3 << 20) + b"\x81")  # cp1252 has no character 0x81
    with pytest.raises(SeqkitError, match=f"byte offset {3 << 20} cannot be decoded"):
        read_corpus(bad, encoding="cp1252")
    assert os.path.getsize(bad) == (3 << 20) + 1


def test_a_file_that_grows_while_it_is_encoded_is_named(folder, tmp_path):
    store = _encoded(folder, tmp_path / "run")
    text = store.scan()
    with open(folder / "a.txt", "a", encoding="utf-8") as f:
        f.write("more")
    with pytest.raises(SeqkitError, match="a.txt changed while it was read"):
        store.write(text, text.vocabulary())
    assert not (tmp_path / "run" / "corpus.npy").exists()


def test_a_cluster_worker_maps_its_own_copy_and_leaves_no_file(folder, tmp_path, monkeypatch):
    """Only the chief writes the run folder; a worker's corpus is mapped from a scratch file
    that is already gone, so that no worker holds the corpus in memory."""
    from seqkit.text.run_folder import RunFolder
    from seqkit.text.train_char import _read, char_config

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read again
    documents, config = collect([folder]), char_config(val_fraction=0.1)
    settings = {"fresh": True, "verbose": False, "base": None, "extend": False}
    worker = _read(documents, RunFolder(tmp_path / "worker"), config, chief=False, **settings)
    chief = _read(documents, RunFolder(tmp_path / "chief"), config, chief=True, **settings)
    assert isinstance(worker.ids, np.memmap) and not list(scratch.iterdir())
    assert not (tmp_path / "worker").exists() and (tmp_path / "chief" / EncodedCorpus.IDS).is_file()
    np.testing.assert_array_equal(worker.ids, chief.ids)
    assert worker.vocab == chief.vocab and worker.split == chief.split
