"""The bad-input catalogue of docs/troubleshooting.md, row by row: each row runs the real
`seqkit` command in its own process and checks its exit code and the exact line it
prints (one line, no traceback); the line's documented form must be in the catalogue.

The rows share one tiny trained model, and run a few at a time, so that the whole
catalogue costs about as much as its slowest rows.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, REQUIRE_DATA, data_root, free_ports

SENTENCE = "the quick brown fox jumps over the lazy dog. "
TINY = ["--embedding", "8", "--layers", "1", "--units", "32", "--seq-len", "16", "--batch-size", "8"]
TINY_RUN = [*TINY, "--epochs", "1", "--eval-every", "10", "--seed", "1"]
CATALOGUE = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
CLOSED_PORT = "http://127.0.0.1:9"  # never the network


@dataclass
class Row:
    """One catalogue row: the command (``{tmp}``, ``{corpus}``, ``{model}`` and ``{data}`` are
    filled in), its exit code, and the line it must print exactly (None: no such line)."""

    id: str
    args: list[str]
    code: int | None  # None: killed, by a signal or with any code but 0
    line: str | None
    documented: str  # the line as the catalogue writes it (``...`` stands for any text)
    prepare: str | None = None  # a function below that sets the row's files up
    env: dict = field(default_factory=dict)
    needs_data: bool = False


def _error(text: str) -> str:
    return f"seqkit: error: {text}"


ROWS = [
    # -- train-char ----------------------------------------------------------------------------
    Row(
        "missing corpus",
        ["train-char", "{tmp}/missing.txt", "--out", "{tmp}/out"],
        1,
        _error("{tmp}/missing.txt does not exist or is not a file."),
        "... does not exist or is not a file.",
    ),
    Row(
        "unknown corpus name",
        ["train-char", "shakespear", "--out", "{tmp}/out"],
        1,
        _error(
            "shakespear is neither a file nor a corpus of the data registry (tinyshakespeare): check the path, "
            "or give one of those names."
        ),
        "... is neither a file nor a corpus of the data registry (...): check the path, or give one of those names.",
    ),
    Row(
        "an empty folder",
        ["train-char", "{tmp}/folder", "--out", "{tmp}/out"],
        1,
        _error("The folder {tmp}/folder holds no files to learn from."),
        "The folder ... holds no files to learn from.",
        prepare="empty_folder",
    ),
    Row(
        "a folder with no file matching include",
        ["train-char", "{tmp}/folder", "--out", "{tmp}/out", "--include", "*.py"],
        1,
        _error("No file in {tmp}/folder matches --include (*.py)."),
        "No file in ... matches --include (...).",
        prepare="text_folder",
    ),
    Row(
        "a folder of files that are not text",
        ["train-char", "{tmp}/folder", "--out", "{tmp}/out"],
        1,
        _error("None of the 1 files in {tmp}/folder is utf-8 text: check --encoding."),
        "None of the N files in ... is ... text: check --encoding.",
        prepare="binary_folder",
    ),
    Row(
        "fine-tuning from a folder without a model",
        ["train-char", "{corpus}", "--out", "{tmp}/out", "--init-from", "{tmp}/nowhere"],
        1,
        _error(
            "{tmp}/nowhere holds no trained model (config.json and vocab.json are missing): point --init-from at "
            "a seqkit train-char output folder."
        ),
        "... holds no trained model (config.json and vocab.json are missing): point --init-from at a seqkit "
        "train-char output folder.",
    ),
    Row(
        "fine-tuning to another shape",
        ["train-char", "{corpus}", "--out", "{tmp}/out", "--init-from", "{model}", "--units", "64"],
        1,
        _error(
            "--units 64 disagrees with the base model (1 x lstm 32, embedding 8): a fine-tuned model keeps its "
            "base's shape; leave them out."
        ),
        "... disagrees with the base model (...): a fine-tuned model keeps its base's shape; leave them out.",
    ),
    Row(
        "fine-tuning to another cell",
        ["train-char", "{corpus}", "--out", "{tmp}/out", "--init-from", "{model}", "--cell", "gru"],
        1,
        _error(
            "--cell gru disagrees with the base model (1 x lstm 32, embedding 8): a fine-tuned model keeps its "
            "base's shape; leave them out."
        ),
        "... disagrees with the base model (...): a fine-tuned model keeps its base's shape; leave them out.",
    ),
    Row(
        "extend-vocab without a base",
        ["train-char", "{corpus}", "--out", "{tmp}/out", "--extend-vocab"],
        1,
        _error("--extend-vocab adds characters to a base model's vocabulary: give --init-from too."),
        "--extend-vocab adds characters to a base model's vocabulary: give --init-from too.",
    ),
    Row(
        "resuming on a corpus of new characters",
        ["train-char", "{tmp}/changed.txt", "--out", "{tmp}/model", *TINY_RUN],
        1,
        _error(
            'The corpus\'s characters differ from those of the model in {tmp}/model (2 new: "!", "Z"): use another '
            "--out, --fresh to start over, or --init-from to fine-tune that model on it."
        ),
        "The corpus's characters differ from those of the model in ... (...): use another --out, --fresh to start "
        "over, or --init-from to fine-tune that model on it.",
        prepare="changed_characters",
    ),
    Row(
        "resuming on a changed corpus",
        ["train-char", "{tmp}/changed.txt", "--out", "{tmp}/model", *TINY_RUN],
        0,
        "note: the corpus changed since {tmp}/model/corpus.npy was encoded: encoding it anew.",
        "note: the corpus changed since ... was encoded: encoding it anew.",
        prepare="changed_text",
    ),
    Row(
        "empty corpus",
        ["train-char", "{tmp}/empty.txt", "--out", "{tmp}/out"],
        1,
        _error("{tmp}/empty.txt is empty: give a text file to learn from."),
        "... is empty: give a text file to learn from.",
        prepare="empty_corpus",
    ),
    Row(
        "binary corpus",
        ["train-char", "{tmp}/picture.png", "--out", "{tmp}/out"],
        1,
        _error(
            "{tmp}/picture.png is not UTF-8 text: byte offset 0 cannot be decoded; if the file uses another "
            "encoding, name it with --encoding (e.g. latin-1, cp1252, utf-16)."
        ),
        "... is not UTF-8 text: byte offset N cannot be decoded; if the file uses another encoding, name it with "
        "--encoding (e.g. latin-1, cp1252, utf-16).",
        prepare="binary_corpus",
    ),
    Row(
        "unknown encoding",
        ["train-char", "{corpus}", "--out", "{tmp}/out", "--encoding", "klingon"],
        1,
        _error("Unknown --encoding 'klingon': use a Python codec name such as latin-1."),
        "Unknown --encoding ...: use a Python codec name such as latin-1.",
    ),
    Row(
        "corpus shorter than a window",
        ["train-char", "{tmp}/short.txt", "--out", "{tmp}/out", "--seq-len", "64"],
        1,
        None,
        "... fewer than one window of --seq-len N + 1: use a longer corpus or a smaller --seq-len.",
        prepare="short_corpus",
    ),
    Row(
        "one huge line",
        ["train-char", "{tmp}/one-line.txt", "--out", "{tmp}/out", *TINY_RUN],
        0,
        None,
        "(not an error: read in pieces cut between characters)",
        prepare="one_line_corpus",
    ),
    Row(
        "unwritable out",
        ["train-char", "{corpus}", "--out", "{tmp}/file/out"],
        1,
        None,
        "Cannot write to --out ...: choose a writable folder.",
        prepare="blocking_file",
    ),
    Row(
        "out of another model",
        ["train-char", "{corpus}", "--out", "{tmp}/model", *TINY_RUN, "--units", "16"],
        1,
        _error(
            "{tmp}/model holds a model of another configuration (units differ): use another --out, or --fresh "
            "to replace it."
        ),
        "... holds a model of another configuration (units differ): use another --out, or --fresh to replace it.",
        prepare="copy_model",
    ),
    Row(
        "newest checkpoint damaged",
        ["train-char", "{corpus}", "--out", "{tmp}/model", *TINY_RUN[:-6], "--seed", "1", "--epochs", "2"],
        0,
        None,
        "note: skipped unreadable checkpoints ...; resumed from ....",
        prepare="damage_newest_checkpoint",
    ),
    Row(
        "all checkpoints damaged",
        ["train-char", "{corpus}", "--out", "{tmp}/model", *TINY_RUN[:-6], "--seed", "1", "--epochs", "2"],
        1,
        None,
        "Cannot resume from ...: its checkpoints ... are damaged or do not match this model; use another --out, "
        "or start over (--fresh).",
        prepare="damage_all_checkpoints",
    ),
    Row(
        "loss becomes nan",
        ["train-char", "{corpus}", "--out", "{tmp}/out", *TINY_RUN, "--lr", "1e45", "--clip", "0"],
        1,
        None,
        "The loss became nan in training step N: training stopped and the last good checkpoint was kept; try "
        "a lower --lr or a smaller --clip.",
    ),
    Row(
        "cudnn without a gpu",
        ["train-char", "{corpus}", "--out", "{tmp}/out", *TINY_RUN, "--cudnn"],
        1,
        _error("cuDNN kernels need an NVIDIA GPU that TensorFlow sees: train without them on this machine."),
        "cuDNN kernels need an NVIDIA GPU that TensorFlow sees: train without them on this machine.",
    ),
    Row(
        "cudnn with a peephole lstm",
        ["train-char", "{corpus}", "--out", "{tmp}/out", *TINY_RUN, "--cudnn", "--cell", "peephole"],
        1,
        _error(
            "cuDNN kernels are for LSTM, GRU and tanh RNN layers (in float16, 32 or 64; not unrolled), and "
            "encoder (peephole) is not one: train without them."
        ),
        "cuDNN kernels are for LSTM, GRU and tanh RNN layers (...), and encoder (peephole) is not one: train "
        "without them.",
    ),
    Row(
        "impossible option value",
        ["train-char", "{corpus}", "--out", "{tmp}/out", "--seq-len", "0"],
        2,
        "Error: Invalid value for '--seq-len': 0 is not in the range x>=1.",
        "Error: Invalid value for '--seq-len': 0 is not in the range x>=1.",
    ),
    Row(
        "no compiler",
        ["train-char", "{corpus}", "--out", "{tmp}/out", *TINY_RUN],
        0,
        "note: Building seqkit's native LSTM kernels needs a C++ compiler (set CXX, or install g++); LSTM "
        "layers run XLA's loops instead.",
        "note: Building seqkit's native LSTM kernels needs a C++ compiler (set CXX, or install g++); LSTM layers run "
        "XLA's loops instead.",
        env={"CXX": "{tmp}/no-compiler", "XDG_CACHE_HOME": "{tmp}/cache"},
    ),
    # -- generate, score, export -----------------------------------------------------------------
    *[
        Row(
            f"{command} without a model",
            [command, "--model", "{tmp}/nowhere", *extra],
            1,
            _error(
                "{tmp}/nowhere holds no trained model (config.json and vocab.json are missing): point --model at "
                "a seqkit train-char output folder."
            ),
            "... holds no trained model (config.json and vocab.json are missing): point --model at a seqkit "
            "train-char output folder.",
        )
        for command, extra in (
            ("generate", []),
            ("score", ["abc"]),
            ("export", ["--out", "{tmp}/saved"]),
            ("serve", ["--port", "0"]),
        )
    ],
    *[
        Row(
            f"{command} with a damaged {damaged}",
            [command, "--model", "{tmp}/model", *extra],
            1,
            None,
            documented,
            prepare=f"damage_{damaged.replace('.', '_')}",
        )
        for command, extra in (("generate", []), ("score", ["the fox"]), ("export", ["--out", "{tmp}/saved"]))
        for damaged, documented in (
            ("config.json", "The saved configuration .../config.json is not readable JSON (...): replace it."),
            ("vocab.json", "The vocabulary .../vocab.json is not readable JSON (...): replace it."),
            ("model.keras", ".../model.keras is damaged (...): retrain, or delete it to use the last checkpoint."),
        )
    ],
    Row(
        "prime with unseen characters",
        ["generate", "--model", "{model}", "--prime", "Zebra"],
        1,
        _error('The prime has characters the model never saw: "Z"; remove them or pass --drop-unknown.'),
        "The prime has characters the model never saw: ...; remove them or pass --drop-unknown.",
    ),
    Row(
        "score with unseen characters",
        ["score", "--model", "{model}", "Zebra"],
        1,
        _error('The text has characters the model never saw: "Z".'),
        "The text has characters the model never saw: ....",
    ),
    Row(
        "beam 0",
        ["generate", "--model", "{model}", "--beam", "0"],
        1,
        _error("--beam must be at least 1."),
        "--beam must be at least 1.",
    ),
    Row(
        "length 0",
        ["generate", "--model", "{model}", "--length", "0"],
        1,
        _error("--length must be at least 1."),
        "--length must be at least 1.",
    ),
    Row(
        "tree depth 0",
        ["generate", "--model", "{model}", "--tree", "--depth", "0"],
        1,
        _error("--width and --depth must be at least 1."),
        "--width and --depth must be at least 1.",
    ),
    Row(
        "temperature 0",
        ["generate", "--model", "{model}", "--temperature", "0"],
        1,
        _error("--temperature must be above 0; for the most likely characters use --greedy."),
        "--temperature must be above 0; for the most likely characters use --greedy.",
    ),
    Row(
        "top-p 2",
        ["generate", "--model", "{model}", "--top-p", "2"],
        1,
        _error("--top-p must be in (0, 1]."),
        "--top-p must be in (0, 1].",
    ),
    Row(
        "top-k below 0",
        ["generate", "--model", "{model}", "--top-k", "-1"],
        1,
        _error("--top-k must be 0 (off) or more."),
        "--top-k must be 0 (off) or more.",
    ),
    Row(
        "no samples",
        ["generate", "--model", "{model}", "--num-samples", "0"],
        1,
        _error("--num-samples must be at least 1, got 0."),
        "--num-samples must be at least 1, got 0.",
    ),
    Row(
        "too many samples",
        ["generate", "--model", "{model}", "--num-samples", "1000000000"],
        1,
        None,
        "1,000,000,000 streams would need about ... GiB, more than half of the ... GiB available: ask for at most "
        "... (--num-samples).",
    ),
    Row(
        "an empty stop string",
        ["generate", "--model", "{model}", "--stop", ""],
        1,
        _error("A stop string (--stop) must not be empty."),
        "A stop string (--stop) must not be empty.",
    ),
    Row(
        "a stop string with unseen characters",
        ["generate", "--model", "{model}", "--stop", "Z"],
        1,
        _error("The stop string 'Z' has characters the model never saw (\"Z\"): it could never match."),
        "The stop string ... has characters the model never saw (...): it could never match.",
    ),
    Row(
        "score a file that is not utf-8",
        ["score", "--model", "{model}", "--file", "{tmp}/latin1.txt"],
        1,
        None,
        "Cannot read ... as UTF-8 text (...).",
        prepare="latin1_file",
    ),
    Row(
        "export in an unknown format",
        ["export", "--model", "{model}", "--out", "{tmp}/out", "--format", "tflite"],
        2,
        "Error: Invalid value for '--format': 'tflite' is not one of 'savedmodel', 'litert', 'onnx'.",
        "Error: Invalid value for '--format': 'tflite' is not one of 'savedmodel', 'litert', 'onnx'.",
    ),
    Row(
        "a quantization the format does not take",
        ["export", "--model", "{model}", "--out", "{tmp}/out", "--format", "onnx", "--quantize", "float16"],
        1,
        _error("--quantize float16 is not for the onnx format: use none."),
        "--quantize float16 is not for the onnx format: use none.",
    ),
    Row(
        "quantizing a SavedModel",
        ["export", "--model", "{model}", "--out", "{tmp}/out", "--quantize", "dynamic-int8"],
        1,
        _error("--quantize and --eval-text are for --format litert and onnx: a SavedModel keeps float32."),
        "--quantize and --eval-text are for --format litert and onnx: a SavedModel keeps float32.",
    ),
    Row(
        "export to a folder that is not empty",
        ["export", "--model", "{model}", "--out", "{tmp}/full"],
        1,
        _error("{tmp}/full exists and is not empty: choose a new --out."),
        "... exists and is not empty: choose a new --out.",
        prepare="full_folder",
    ),
    Row(
        "export to an unwritable place",
        ["export", "--model", "{model}", "--out", "{tmp}/file/saved"],
        1,
        None,
        "Cannot write ... (...): make room on the disk or choose a writable folder.",
        prepare="blocking_file",
    ),
    # -- bench mnist ----------------------------------------------------------------------------
    Row(
        "mnist missing and offline",
        ["bench", "mnist", "--quick", "--no-baseline", "--data-dir", "{tmp}/empty-data"],
        1,
        None,
        "mnist/... could not be downloaded (...)...",
        env={"SEQKIT_MIRROR": CLOSED_PORT},
    ),
    *[
        Row(
            f"mnist file {kind}",
            ["bench", "mnist", "--quick", "--no-baseline", "--data-dir", "{tmp}/data"],
            1,
            None,
            documented,
            prepare=f"mnist_{kind.replace(' ', '_')}",
            env={"SEQKIT_MIRROR": CLOSED_PORT},
        )
        for kind, documented in (
            (
                "truncated gzip",
                "... is a damaged gzip file (...): delete it so seqkit can fetch it again, or replace it with a "
                "good copy.",
            ),
            (
                "wrong content",
                "... fails its SHA-256 check (...): delete it so seqkit can fetch it again, or replace it with a "
                "good copy.",
            ),
        )
    ],
    Row(
        "missing baseline",
        ["bench", "mnist", "--quick", "--baseline", "{tmp}/nowhere.json"],
        1,
        _error("The baseline {tmp}/nowhere.json does not exist."),
        "The baseline ... does not exist.",
    ),
    Row(
        "corrupt baseline",
        ["bench", "mnist", "--quick", "--baseline", "{tmp}/corrupt.json"],
        1,
        None,
        "The baseline ... is not readable JSON (...): replace it.",
        prepare="corrupt_baseline",
    ),
    Row(
        "baseline of other settings",
        ["bench", "mnist", "--quick", "--baseline", "{tmp}/other.json"],
        1,
        None,
        "The baseline was made with other settings (... differ): run with the baseline's options, or without a "
        "baseline (--no-baseline).",
        prepare="other_settings_baseline",
    ),
    Row(
        "baseline of another code path",
        ["bench", "mnist", "--quick", "--data-dir", "{data}", "--baseline", "{tmp}/other-path.json"],
        1,
        None,
        "The baseline ... ran ... and this run ...: their speeds do not compare; make a baseline of this path "
        "with --json.",
        prepare="other_path_baseline",
        needs_data=True,
    ),
    Row(
        "a real regression",
        ["bench", "mnist", "--quick", "--data-dir", "{data}", "--train-subset", "640", "--baseline", "{tmp}/high.json"],
        1,
        None,
        "REGRESSION: test_accuracy ... is ... below the baseline's ... (tolerance ...)",
        prepare="unreachable_baseline",
        needs_data=True,
    ),
    Row(
        "bench cudnn without a gpu",
        ["bench", "mnist", "--quick", "--data-dir", "{data}", "--no-baseline", "--cudnn"],
        1,
        _error("cuDNN kernels need an NVIDIA GPU that TensorFlow sees: train without them on this machine."),
        "cuDNN kernels need an NVIDIA GPU that TensorFlow sees: train without them on this machine.",
        needs_data=True,
    ),
    # -- several machines -----------------------------------------------------------------------
    Row(
        "multi-worker without TF_CONFIG",
        ["train-char", "{corpus}", "--out", "{tmp}/out", "--strategy", "multi-worker"],
        1,
        None,
        "--strategy multi-worker reads the cluster from TF_CONFIG, which is ...",
    ),
    Row(
        "a worker that never comes",
        [
            "train-char",
            "{corpus}",
            "--out",
            "{tmp}/out",
            *TINY_RUN,
            "--strategy",
            "multi-worker",
            "--worker-timeout",
            "5",
        ],
        None,
        None,
        "Another worker could not be reached within N s (...): start the same command on every worker of "
        "TF_CONFIG, check the addresses, or raise --worker-timeout.",
        env={"TF_CONFIG": "two workers, the other never started"},
    ),
]


# -- what the rows need ------------------------------------------------------------------------
def _copy_model(tmp: Path, model: Path) -> Path:
    shutil.copytree(model, tmp / "model")
    return tmp / "model"


def _checkpoint_data(folder: Path) -> list[Path]:
    return sorted(folder.glob("ckpt-*.data-*"), key=lambda p: int(p.name[5:].split(".")[0]))


def _mnist(tmp: Path, content: bytes) -> None:
    (tmp / "data" / "mnist").mkdir(parents=True)
    suffix = ".gz" if content[:2] == b"\x1f\x8b" else ""
    (tmp / "data" / "mnist" / f"train-images-idx3-ubyte{suffix}").write_bytes(content)


def _baseline(tmp: Path, name: str, **changes) -> None:
    from seqkit.mnist import bench

    figures = {
        "config": bench.profile_config("quick").comparable(),
        "test_accuracy": 0.97,
        "train_samples_per_sec": 1000.0,
        "machine_gflops": 100.0,
        "code_path": {
            "device": "cpu",
            "layers": ["lstm somewhere else"],
            "bf16_gradients": False,
            "bf16_recurrence": False,
        },
    }
    figures.update(changes)
    (tmp / name).write_text(json.dumps(figures))


PREPARE = {
    "empty_corpus": lambda tmp, model: (tmp / "empty.txt").write_text(""),
    "empty_folder": lambda tmp, model: (tmp / "folder").mkdir(),
    "text_folder": lambda tmp, model: ((tmp / "folder").mkdir(), (tmp / "folder" / "a.txt").write_text(SENTENCE)),
    "binary_folder": lambda tmp, model: ((tmp / "folder").mkdir(), (tmp / "folder" / "a.bin").write_bytes(b"\xff\xfe")),
    "binary_corpus": lambda tmp, model: (tmp / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
    "short_corpus": lambda tmp, model: (tmp / "short.txt").write_text("too short"),
    "one_line_corpus": lambda tmp, model: (tmp / "one-line.txt").write_text(SENTENCE.strip() * 2000),
    "blocking_file": lambda tmp, model: (tmp / "file").write_text("not a folder"),
    "copy_model": _copy_model,
    "changed_characters": lambda tmp, model: (
        _copy_model(tmp, model),
        (tmp / "changed.txt").write_text(("Zany zebras! " + SENTENCE) * 80),
    ),
    "changed_text": lambda tmp, model: (
        _copy_model(tmp, model),
        (tmp / "changed.txt").write_text((" ".join(reversed(SENTENCE.split())) + " ") * 80),
    ),
    "damage_newest_checkpoint": lambda tmp, model: _checkpoint_data(_copy_model(tmp, model) / "checkpoints")[
        -1
    ].write_bytes(b"\x00" * 10),
    "damage_all_checkpoints": lambda tmp, model: [
        p.write_bytes(b"\x00" * 10) for p in _checkpoint_data(_copy_model(tmp, model) / "checkpoints")
    ],
    "damage_config_json": lambda tmp, model: (_copy_model(tmp, model) / "config.json").write_bytes(b"\x00garbage"),
    "damage_vocab_json": lambda tmp, model: (_copy_model(tmp, model) / "vocab.json").write_bytes(b"\x00garbage"),
    "damage_model_keras": lambda tmp, model: (_copy_model(tmp, model) / "model.keras").write_bytes(b"\x00garbage"),
    "latin1_file": lambda tmp, model: (tmp / "latin1.txt").write_bytes("caf\u00e9".encode("latin-1")),
    "full_folder": lambda tmp, model: ((tmp / "full").mkdir(), (tmp / "full" / "x").write_text("x")),
    "mnist_truncated_gzip": lambda tmp, model: _mnist(tmp, gzip.compress(b"\x00\x00\x08\x03" + bytes(100))[:20]),
    "mnist_wrong_content": lambda tmp, model: _mnist(tmp, b"\x00\x00\x08\x03" + bytes(100)),
    "corrupt_baseline": lambda tmp, model: (tmp / "corrupt.json").write_text("{not json"),
    "other_settings_baseline": lambda tmp, model: _baseline(tmp, "other.json", config={"batch_size": 1}),
    "other_path_baseline": lambda tmp, model: _baseline(tmp, "other-path.json"),
    "unreachable_baseline": lambda tmp, model: _unreachable_baseline(tmp),
}


def _unreachable_baseline(tmp: Path) -> None:
    from seqkit.core.dispatch import code_path, for_training
    from seqkit.mnist import bench
    from seqkit.mnist.classifier import build_classifier

    config = bench.profile_config("quick", train_subset=640)
    model = build_classifier(config.model)
    path = code_path(model, for_training(model))
    _baseline(tmp, "high.json", config=config.comparable(), test_accuracy=0.999, code_path=path)


def _fill(text: str, tmp: Path, corpus: Path, model: Path, data: Path) -> str:
    return text.format(tmp=tmp, corpus=corpus, model=model, data=data)


def _environment(row: Row, tmp: Path, ports: list[int]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for key, value in row.env.items():
        env[key] = _fill(value, tmp, tmp, tmp, tmp)
        if key == "TF_CONFIG":
            workers = [f"127.0.0.1:{port}" for port in ports]
            env[key] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 0}})
    return env


def _run_row(row: Row, root: Path, corpus: Path, model: Path, data: Path | None) -> tuple[Row, Path, object]:
    tmp = root / re.sub(r"\W+", "-", row.id)
    tmp.mkdir()
    if row.needs_data and data is None:
        return row, tmp, None
    if row.prepare:
        PREPARE[row.prepare](tmp, model)
    args = [_fill(a, tmp, corpus, model, data or tmp) for a in row.args]
    result = subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=_environment(row, tmp, free_ports(2)),
        timeout=600,
    )
    return row, tmp, result


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory):
    """One tiny trained model (and its corpus) for every row."""
    from seqkit.core.trainer import TrainConfig
    from seqkit.text.train_char import char_config, train_char

    root = tmp_path_factory.mktemp("catalogue")
    corpus = root / "corpus.txt"
    corpus.write_text(SENTENCE * 80, encoding="utf-8")
    config = char_config(embedding=8, layers=1, units=32, seq_len=16, batch_size=8, eval_every=10, seed=1)
    config.train = TrainConfig(epochs=1)
    train_char(corpus, root / "model", config, verbose=False)
    return corpus, root / "model"


@pytest.fixture(scope="module")
def outcomes(shared_model, tmp_path_factory) -> dict:
    """Every row's process, three at a time."""
    corpus, model = shared_model
    root = tmp_path_factory.mktemp("rows")
    data = data_root() if (data_root() / "mnist").is_dir() else None

    def run(row):
        try:
            return _run_row(row, root, corpus, model, data)
        except Exception as err:  # noqa: BLE001 (reported by the row's own test)
            return row, root, err

    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(run, ROWS))
    return {row.id: (tmp, result, corpus, model, data) for row, tmp, result in done}


def _pattern(documented: str) -> re.Pattern:
    """The documented line as a pattern: ``...`` is any text, ``N`` a number."""
    parts = [re.escape(part) for part in documented.split("...")]
    return re.compile(re.sub(r"(?<![A-Za-z])N(?![A-Za-z])", r"\\d+", ".*".join(parts)) + "$")


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_catalogue_row(row: Row, outcomes):
    tmp, result, corpus, model, data = outcomes[row.id]
    if isinstance(result, Exception):
        raise result
    if result is None:
        if REQUIRE_DATA:
            pytest.fail(f"no MNIST in {data_root()}, and SEQKIT_REQUIRE_DATA asks for it")
        pytest.skip(f"needs the MNIST data set in SEQKIT_DATA_DIR ({row.id})")
    assert f"| {row.documented} |" in CATALOGUE.replace("`", ""), f"not in docs/troubleshooting.md: {row.documented}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    if row.code is None:  # the watchdog ends a process that cannot cancel its start-up
        assert result.returncode != 0, result.stdout + result.stderr
    else:
        assert result.returncode == row.code, result.stdout + result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith(("seqkit: error:", "Error:", "note:"))]
    said += [line for line in result.stderr.splitlines() if line.startswith("REGRESSION:")]
    if row.code == 0 and not row.documented.startswith("note:"):
        assert not said, result.stderr
        return
    assert len(said) == 1, result.stderr
    line = said[0]
    if row.line is not None:
        assert line == _fill(row.line, tmp, corpus, model, data or tmp)
    text = re.sub(r"^(seqkit: error: |note: )", "", line)
    documented = re.sub(r"^note: ", "", row.documented)
    assert _pattern(documented).match(text), f"{text!r} is not what the catalogue says: {row.documented!r}"


def test_sigterm_saves_and_says_how_to_resume(shared_model, tmp_path):
    """Ctrl-C / SIGTERM: the run stops within seconds with a checkpoint, exit 130, one line."""
    corpus, _ = shared_model
    out = tmp_path / "run"
    args = [sys.executable, "-m", "seqkit.cli", "train-char", str(corpus), "--out", str(out), *TINY]
    args += ["--max-time", "300", "--eval-every", "1000"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for started in process.stdout:  # the start line: training is under way
            if started.startswith("Training"):
                break
        else:
            pytest.fail(process.stderr.read())
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    line = f"seqkit: interrupted; the last checkpoint is in {out}; run the same command to resume."
    assert process.returncode == 130 and stderr.strip().splitlines()[-1] == line, stderr
    assert f"| {line.removeprefix('seqkit: ').split(';')[0]}" in CATALOGUE.replace("`", "")
    assert (out / "checkpoints" / "checkpoint").is_file()


def test_sigterm_during_an_evaluation_is_answered_within_seconds(tmp_path):
    """A long evaluation after every step: the signal comes while one runs."""
    corpus = tmp_path / "long.txt"
    corpus.write_text(SENTENCE * 8000, encoding="utf-8")  # 360,000 characters, half of them held out
    out = tmp_path / "run"
    args = [sys.executable, "-m", "seqkit.cli", "train-char", str(corpus), "--out", str(out), *TINY]
    args += ["--max-time", "300", "--eval-every", "1", "--val-fraction", "0.5"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "checkpoint").is_file():  # after the first evaluation
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)  # well into the next evaluation, which takes most of each step's time
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        answered = time.monotonic() - signalled
    finally:
        process.kill()
    assert process.returncode == 130 and "seqkit: interrupted" in stderr, stderr
    assert answered < 10, f"the run took {answered:.1f} s to stop"
    assert (out / "checkpoints" / "checkpoint").is_file()


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return mounted.returncode == 0


def test_a_full_disk_stops_training_in_one_line_and_keeps_the_folder_consistent(shared_model, tmp_path):
    """A real full filesystem (a small tmpfs): the first checkpoint cannot be written; the
    run says so in one line, and nothing half-written is left for a rerun to take."""
    corpus, _ = shared_model
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "96k"):
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        out = disk / "run"
        result = subprocess.run(
            [sys.executable, "-m", "seqkit.cli", "train-char", str(corpus), "--out", str(out), *TINY_RUN],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        said = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(said) == 1, result.stderr
        assert said[0].startswith("seqkit: error: Cannot write") and "No space left on device" in said[0]
        assert not (out / "checkpoints" / "checkpoint").exists()
        assert not list((out / "checkpoints").glob("*_temp")) if (out / "checkpoints").exists() else True
        assert "| train-char | disk full on --out |" in CATALOGUE.replace("`", "")
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_serving_on_a_port_in_use_is_one_line(shared_model, tmp_path):
    import socket

    _, model = shared_model
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "seqkit.cli", "serve", "--model", str(model), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    finally:
        taken.close()
    said = [line for line in result.stderr.splitlines() if line.startswith("seqkit: error:")]
    assert result.returncode == 1 and said == [
        f"seqkit: error: Cannot listen on 127.0.0.1:{port} (Address already in use): choose another --port."
    ], result.stderr
    assert "| serve | a port in use | Cannot listen on ...:N (Address already in use): choose another --port. |" in (
        CATALOGUE.replace("`", "")
    )
