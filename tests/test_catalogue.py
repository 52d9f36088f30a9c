"""The bad-input catalogue of docs/troubleshooting.md, for the cases not already
covered beside the feature they belong to (test_train_char, test_decode, test_datasets,
test_cli): each ends with exit code 1 (2 for click's usage errors), one line that says what
went wrong and what to do, and no traceback."""

import gzip
import resource
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO

from seqkit.cli import main
from seqkit.core import cudnn
from seqkit.core.trainer import TrainConfig
from seqkit.text.train_char import char_config, train_char

SENTENCE = "the quick brown fox jumps over the lazy dog. "
TINY = [
    "--embedding",
    "8",
    "--layers",
    "1",
    "--units",
    "32",
    "--seq-len",
    "16",
    "--batch-size",
    "8",
    "--epochs",
    "1",
    "--eval-every",
    "10",
]


def _seqkit(*args) -> tuple[int, str]:
    """Run the command in this process; --verbose leaves file descriptor 2 alone."""
    result = CliRunner().invoke(main, ["--verbose", *args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"unhandled {result.exception!r}"
    )
    said = [line for line in result.stderr.splitlines() if line.startswith(("seqkit: error:", "Error:"))]
    assert len(said) == 1 and "Traceback" not in result.output, result.output
    return result.exit_code, said[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogue")
    corpus = root / "corpus.txt"
    corpus.write_text(SENTENCE * 80, encoding="utf-8")
    config = char_config(embedding=8, layers=1, units=32, seq_len=16, batch_size=8, eval_every=10, seed=1)
    config.train = TrainConfig(epochs=1)
    train_char(corpus, root / "model", config, verbose=False)
    return corpus, root / "model"


def test_a_binary_corpus(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    code, line = _seqkit("train-char", str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and "is not UTF-8 text: byte offset 0" in line and "--encoding" in line


def test_an_unknown_encoding(trained, tmp_path):
    code, line = _seqkit("train-char", str(trained[0]), "--out", str(tmp_path / "o"), "--encoding", "klingon")
    assert code == 1 and "Unknown --encoding" in line


@pytest.mark.parametrize(
    "option",
    [
        ["--seq-len", "0"],
        ["--val-fraction", "1"],
        ["--dropout", "-0.1"],
        ["--lr", "0"],
        ["--batch-size", "0"],
        ["--cell", "transformer"],
    ],
)
def test_impossible_train_char_options_are_usage_errors(trained, tmp_path, option):
    code, line = _seqkit("train-char", str(trained[0]), "--out", str(tmp_path / "o"), *option)
    assert code == 2 and option[0] in line


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(trained, tmp_path):
    import shutil

    corpus, model = trained
    out = tmp_path / "run"
    shutil.copytree(model, out)
    data = sorted((out / "checkpoints").glob("ckpt-*.data-*"), key=lambda p: int(p.name[5:].split(".")[0]))
    assert len(data) >= 2
    data[-1].write_bytes(b"\x00" * 10)
    again = ["train-char", str(corpus), "--out", str(out), *TINY[:-4], "--seed", "1"]
    result = CliRunner().invoke(main, ["--verbose", *again, "--epochs", "2", "--eval-every", "10"])
    assert result.exit_code == 0, result.output
    assert f"note: skipped unreadable checkpoints {data[-1].name.split('.')[0]}" in result.stderr
    for path in (out / "checkpoints").glob("ckpt-*.data-*"):
        path.write_bytes(b"\x00" * 10)
    code, line = _seqkit(*again, "--epochs", "3", "--eval-every", "10")
    assert code == 1 and "are damaged or do not match this model" in line


def test_generate_from_a_folder_that_does_not_exist(tmp_path):
    code, line = _seqkit("generate", "--model", str(tmp_path / "nowhere"))
    assert code == 1 and "nowhere" in line


@pytest.mark.parametrize("option", [["--depth", "0"], ["--width", "0"]])
def test_a_tree_without_levels_or_children(trained, option):
    code, line = _seqkit("generate", "--model", str(trained[1]), "--tree", *option)
    assert code == 1 and "must be at least 1" in line


def test_scoring_a_file_that_is_not_utf8(trained, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9".encode("latin-1"))
    code, line = _seqkit("score", "--model", str(trained[1]), "--file", str(path))
    assert code == 1 and "as UTF-8 text" in line


def test_export_from_a_folder_without_a_model(tmp_path):
    code, line = _seqkit("export", "--model", str(tmp_path), "--out", str(tmp_path / "saved"))
    assert code == 1 and "holds no trained model" in line


def test_export_to_an_unwritable_place(trained, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, line = _seqkit("export", "--model", str(trained[1]), "--out", str(blocker / "saved"))
    assert code == 1 and str(blocker) in line


@pytest.mark.parametrize("content, message", [(None, "does not exist"), (b"{not json", "not readable JSON")])
def test_a_missing_or_corrupt_baseline(tmp_path, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_bytes(content)
    code, line = _seqkit("bench", "mnist", "--quick", "--baseline", str(path))
    assert code == 1 and message in line


@pytest.mark.parametrize(
    "content, message",
    [
        (gzip.compress(b"\x00\x00\x08\x03" + bytes(100))[:20], "is a damaged gzip file"),
        (gzip.compress(b"\x00\x00\x08\x03" + bytes(100))[:40], "fails its SHA-256 check"),
        (b"\x00\x00\x08\x03" + bytes(100), "fails its SHA-256 check"),
    ],
)
def test_truncated_or_wrong_mnist_files(tmp_path, monkeypatch, content, message):
    monkeypatch.setenv("SEQKIT_MIRROR", "http://127.0.0.1:9")  # never the network
    (tmp_path / "mnist").mkdir()
    suffix = ".gz" if content[:2] == b"\x1f\x8b" else ""
    (tmp_path / "mnist" / f"train-images-idx3-ubyte{suffix}").write_bytes(content)
    code, line = _seqkit("bench", "mnist", "--quick", "--no-baseline", "--data-dir", str(tmp_path))
    assert code == 1 and message in line and "train-images-idx3-ubyte" in line


def test_a_full_disk_under_out_keeps_the_folder_consistent(trained, tmp_path):
    """Files over 40 KiB cannot be written (RLIMIT_FSIZE), as on a full disk: the first
    checkpoint fails, and nothing half-written is left for a rerun to take."""
    out = tmp_path / "run"

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40 << 10, 40 << 10))

    result = subprocess.run(
        [sys.executable, "-m", "seqkit.cli", "train-char", str(trained[0]), "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        preexec_fn=limit_file_size,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Cannot write a checkpoint" in result.stderr, result.stderr
    assert "free disk space" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "checkpoints" / "checkpoint").exists()
    assert not list((out / "checkpoints").glob("*_temp"))


@pytest.mark.skipif(cudnn.available(), reason="checks a machine without a GPU")
@pytest.mark.parametrize(
    "cell, says",
    [
        ("lstm", "cuDNN kernels need an NVIDIA GPU that TensorFlow sees"),
        ("peephole", "and encoder (peephole) is not one"),
    ],
)
def test_cudnn_asked_for_where_it_cannot_run(trained, tmp_path, cell, says):
    code, line = _seqkit("train-char", str(trained[0]), "--out", str(tmp_path / "o"), *TINY, "--cell", cell, "--cudnn")
    assert code == 1 and says in line and "train without them" in line
