"""A corpus of many files: folders walked in order, globs, files that are not text skipped
and reported (or refused), and the documents read as one text."""

import os
import subprocess
import sys

import numpy as np
import pytest

from seqkit.errors import SeqkitError
from seqkit.text.corpus import id_type, scan
from seqkit.text.documents import collect

SENTENCE = "the quick brown fox jumps over the lazy dog. "


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "songs"
    (root / "b").mkdir(parents=True)
    (root / "x.txt").write_text("first song", encoding="utf-8")
    (root / "z.py").write_text("print('third')\n", encoding="utf-8")
    (root / "b" / "y.txt").write_text("second song\n", encoding="utf-8")
    (root / ".hidden").write_text("never read", encoding="utf-8")
    (root / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return root


def test_a_folder_is_walked_in_order_and_files_that_are_not_text_are_skipped(folder):
    documents = collect([folder])
    assert documents.files == [folder / "x.txt", folder / "z.py", folder / "b" / "y.txt"]
    assert documents.skipped == [folder / "cover.png"]
    assert documents.describe_skipped() == f"1 file not utf-8 text ({folder / 'cover.png'})"


def test_globs_pick_a_folders_files(folder):
    assert collect([folder], include=["*.py"]).files == [folder / "z.py"]
    assert collect([folder], include=["*.py", "b/*.txt"]).files == [folder / "z.py", folder / "b" / "y.txt"]


def test_strict_refuses_a_file_that_is_not_text(folder):
    with pytest.raises(SeqkitError, match="cover.png is not utf-8 text"):
        collect([folder], strict=True)


@pytest.mark.parametrize(
    "make, include, message",
    [
        (lambda root: None, (), "holds no files to learn from"),
        (lambda root: (root / "a.txt").write_text("text"), ("*.py",), r"No file in .* matches `include` \(\*\.py\)"),
        (lambda root: (root / "a.bin").write_bytes(b"\xff\xfe\x00"), (), "None of the 1 files in .* is utf-8 text"),
    ],
    ids=["empty", "no match", "nothing decodes"],
)
def test_a_folder_without_text_is_one_error(tmp_path, make, include, message):
    root = tmp_path / "empty"
    root.mkdir()
    make(root)
    with pytest.raises(SeqkitError, match=message):
        collect([root], include=include)


def _text(documents) -> str:
    text = scan(documents, val_fraction=0)
    vocab = text.vocabulary()
    ids = np.empty(text.total, id_type(vocab))
    text.write(vocab, ids)
    return vocab.decode(ids)


def test_documents_are_read_each_on_lines_of_its_own(folder):
    assert _text(collect([folder])) == "first song\nprint('third')\nsecond song\n"


def test_one_file_is_read_as_it_is(folder):
    assert _text(collect([folder / "x.txt"])) == "first song"


def test_train_char_on_a_folder_says_what_it_read_and_names_its_run_after_it(folder, tmp_path):
    for i in range(3):
        (folder / f"sentences{i}.txt").write_text(SENTENCE * 30, encoding="utf-8")
    args = ["train-char", str(folder), "--include", "*.txt", "--embedding", "8", "--layers", "1", "--units", "16"]
    args += ["--seq-len", "16", "--batch-size", "8", "--epochs", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    said = result.stdout.splitlines()
    assert f"Read 5 files, {11 + 12 + 3 * (30 * len(SENTENCE) + 1):,} characters." in said  # a newline each
    run = tmp_path / "runs" / "songs"
    assert (run / "model.keras").is_file() and (run / "corpus.npy").is_file()
