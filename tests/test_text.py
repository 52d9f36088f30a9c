"""Vocabulary, corpus reading and windows of the character model."""

import gzip
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqkit.errors import SeqkitError
from seqkit.text.corpus import _chunks, read_corpus
from seqkit.text.vocab import UNKNOWN_ID, Vocabulary, codepoints
from seqkit.text.windows import eval_windows, train_windows, window_starts, windows_per_epoch

# Text as UTF-8 can carry it: any code point but lone surrogates.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(texts)
def test_vocabulary_round_trips_any_text_it_was_built_from(text):
    vocab = Vocabulary.from_points(codepoints(text), normalization="none")
    ids = vocab.encode(text)
    assert UNKNOWN_ID not in ids
    assert vocab.decode(ids) == text
    assert len(ids) == len(text) and (ids < vocab.size).all()


@given(texts, texts)
def test_characters_never_seen_become_the_unknown_id(seen, other):
    vocab = Vocabulary.from_points(codepoints(seen), normalization="none")
    ids = vocab.encode(other)
    unknown = {c for c in other if c not in seen}
    assert {c for c, i in zip(other, ids) if i == UNKNOWN_ID} == unknown
    assert set(vocab.unknown_chars(other)) == unknown


@given(texts)
@settings(max_examples=50)
def test_vocabulary_survives_its_json_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("v") / "vocab.json"
    vocab = Vocabulary.from_points(codepoints(text), normalization="NFC")
    vocab.save(path)
    assert Vocabulary.load(path) == vocab


def test_nfc_normalization_merges_composed_and_decomposed_forms():
    vocab = Vocabulary.from_points(codepoints("caf\u00e9"), normalization="NFC")
    assert list(vocab.encode("cafe\u0301")) == list(vocab.encode("caf\u00e9"))


@pytest.mark.parametrize(
    "n_ids, seq_len, seed, epoch",
    [(1001, 10, 0, 0), (1001, 10, 0, 5), (57, 7, 3, 1), (12, 11, 1, 2)],
)
def test_windows_cover_the_text_once_per_epoch_with_a_shift(n_ids, seq_len, seed, epoch):
    starts = window_starts(n_ids, seq_len, seed, epoch)
    assert len(starts) == windows_per_epoch(n_ids, seq_len)
    ordered = np.sort(starts)
    assert (np.diff(ordered) == seq_len).all()  # adjacent, no overlap, no gap
    assert 0 <= ordered[0] < seq_len and ordered[-1] + seq_len + 1 <= n_ids
    # everything but less than two windows' worth at the ends is covered
    assert n_ids - len(starts) * seq_len < 2 * seq_len + 1


def test_training_batches_are_inputs_and_targets_shifted_by_one():
    ids = np.arange(500, dtype=np.uint16)
    x, y = next(iter(train_windows(ids, seq_len=10, batch_size=4, seed=0)))
    assert x.shape == (4, 10) and y.shape == (4, 10)
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])
    np.testing.assert_array_equal(y.numpy() - x.numpy(), np.ones((4, 10)))


def test_the_window_stream_resumes_at_any_step():
    ids = np.arange(997, dtype=np.uint16)  # 98 windows an epoch: batches straddle epochs
    stream = train_windows(ids, seq_len=10, batch_size=8, seed=4)
    full = [x.numpy() for x, _ in stream.take(40)]
    for step in (0, 1, 12, 13, 25):
        resumed = [x.numpy() for x, _ in train_windows(ids, 10, 8, 4, start_step=step).take(40 - step)]
        for a, b in zip(full[step:], resumed):
            np.testing.assert_array_equal(a, b)


def test_eval_windows_are_consecutive_and_shorten_for_short_text():
    ids = np.arange(35, dtype=np.uint16)
    batches = list(eval_windows(ids, seq_len=10, batch_size=2))
    xs = np.concatenate([x.numpy() for x, _ in batches])
    np.testing.assert_array_equal(xs.ravel(), np.arange(30))
    short = list(eval_windows(np.arange(5, dtype=np.uint16), seq_len=100, batch_size=2))
    assert short[0][0].shape == (1, 4)


@pytest.mark.parametrize(
    "text",
    [
        "ab\u00e9c\n" * 50 + "\u4e2d\u6587" * 40 + "xy" * 30,
        "\u4e2d\u6587e\u0301\u1100\u1161" * 200,  # one huge line, no ASCII pair, no newline
    ],
)
def test_chunks_cut_only_at_safe_places(text):
    data = text.encode()
    ranges = _chunks(data, size=37)
    assert len(ranges) > len(data) // 60  # pieces near the size asked for, not one huge piece
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    pieces = [data[start:end].decode("utf-8") for start, end in ranges]  # whole characters
    normalized = "".join(unicodedata.normalize("NFC", piece) for piece in pieces)
    assert normalized == unicodedata.normalize("NFC", text)  # no NFC sequence was split


def test_read_corpus_splits_the_tail_for_validation(tmp_path):
    text = "abcdefghij" * 10 + "\u4e2d"
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    corpus = read_corpus(path, val_fraction=0.1)
    assert len(corpus.ids) == 101 and corpus.split == 91
    assert corpus.vocab.decode(corpus.train_ids) == text[:91]
    assert corpus.vocab.decode(corpus.val_ids) == text[91:-1] + "\ufffd"  # unseen in training


def test_read_corpus_large_file_in_chunks_matches_small(tmp_path, monkeypatch):
    import seqkit.text.corpus as corpus_module

    text = "Ünïcödé text\nwith lines 中文\n" * 200
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    whole = read_corpus(path)
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 100)
    chunked = read_corpus(path)
    np.testing.assert_array_equal(whole.ids, chunked.ids)
    assert whole.vocab == chunked.vocab


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"good text\xff\xfe more", "byte offset 9 cannot be decoded"),
        (gzip.compress(b"binary"), "byte offset 1 cannot be decoded"),
    ],
)
def test_bad_corpus_files_are_named(tmp_path, content, message):
    path = tmp_path / "c.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SeqkitError, match=message):
        read_corpus(path)


def test_other_encodings_by_name(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    assert (
        read_corpus(path, encoding="latin-1", val_fraction=0).vocab.decode(
            read_corpus(path, encoding="latin-1", val_fraction=0).ids
        )
        == "caf\u00e9 cr\u00e8me"
    )
    with pytest.raises(SeqkitError, match="Unknown `encoding`"):
        read_corpus(path, encoding="no-such-codec")


def test_a_corpus_shorter_than_one_window_is_refused():
    with pytest.raises(SeqkitError, match="fewer than one window"):
        train_windows(np.arange(50, dtype=np.uint16), seq_len=100, batch_size=2, seed=0)


def test_an_evaluation_reads_a_fixed_sample_of_a_long_held_out_text():
    from seqkit.text.windows import VAL_BLOCK, validation_sample

    ids = np.arange(1_000_000, dtype=np.int32)
    assert validation_sample(ids[:5000], 10_000) is not None and len(validation_sample(ids[:5000], 10_000)) == 5000
    sample = validation_sample(ids, 20 * VAL_BLOCK)
    assert len(sample) == 20 * VAL_BLOCK and sample[0] == 0 and sample[-1] == len(ids) - 1  # spread end to end
    np.testing.assert_array_equal(sample, validation_sample(ids, 20 * VAL_BLOCK))  # the same every time
    assert (np.diff(sample.reshape(20, VAL_BLOCK), axis=1) == 1).all()  # whole blocks
