"""No lost work: real `seqkit train-char` processes killed with SIGKILL (mid-training and
half-way through a checkpoint write) or stopped with Ctrl-C resume from their last complete
checkpoint and end with the same steps and, with --seed on CPU, the same weights as a run
that was never interrupted."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

HERE = Path(__file__).parent
SENTENCE = "the quick brown fox jumps over the lazy dog. "
# 25 steps per epoch, 100 in all, a checkpoint every 10 steps.
TINY = [
    "--seed",
    "7",
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
    "4",
    "--eval-every",
    "10",
    "--lr",
    "0.01",
    "--warmup",
    "5",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(SENTENCE * 80, encoding="utf-8")
    return path


def _start(corpus, out, *faults) -> subprocess.Popen:
    command = [
        sys.executable,
        str(HERE / "seqkit_instrumented.py"),
        *faults,
        "--",
        "train-char",
        str(corpus),
        "--out",
        str(out),
        *TINY,
    ]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def _run(corpus, out, *faults) -> tuple[int, str, str]:
    return _finish(_start(corpus, out, *faults))


def _latest_checkpoint(out: Path) -> int | None:
    index = out / "checkpoints" / "checkpoint"
    if not index.is_file():
        return None
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', index.read_text(), re.M)
    return int(found.group(1)) if found else None


def _wait_for_checkpoint(process: subprocess.Popen, out: Path, at_least: int) -> int:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        step = _latest_checkpoint(out)
        if step is not None and step >= at_least:
            return step
        time.sleep(0.05)
    raise AssertionError("no checkpoint was written in time")


def _weights(out: Path) -> list[np.ndarray]:
    import keras

    import seqkit.core  # noqa: F401  (registers the layers)

    return keras.models.load_model(out / "model.keras").get_weights()


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory):
    """The uninterrupted run every interrupted one is compared with."""
    out = tmp_path_factory.mktemp("straight") / "run"
    code, _, stderr = _run(corpus, out)
    assert code == 0, stderr
    return json.loads((out / "metrics.json").read_text())["steps"], _weights(out)


def _resume_and_compare(corpus, out, straight, expected_start: int) -> None:
    code, stdout, stderr = _run(corpus, out)
    assert code == 0, stderr
    assert f"Resuming at step {expected_start}:" in stdout, stdout
    steps, weights = straight
    assert json.loads((out / "metrics.json").read_text())["steps"] == steps == 100
    for resumed, reference in zip(_weights(out), weights):
        np.testing.assert_allclose(resumed, reference, rtol=0, atol=1e-6)


def test_sigkill_mid_training_resumes_from_the_last_checkpoint(corpus, tmp_path, straight):
    out = tmp_path / "run"
    process = _start(corpus, out, "--step-delay", "0.05")
    _wait_for_checkpoint(process, out, at_least=20)
    time.sleep(0.3)  # somewhere between two checkpoints
    process.send_signal(signal.SIGKILL)
    code, _, _ = _finish(process)
    assert code == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    _resume_and_compare(corpus, out, straight, expected_start=_latest_checkpoint(out))


def test_sigkill_while_a_checkpoint_is_written_keeps_the_previous_one(corpus, tmp_path, straight):
    out = tmp_path / "run"
    code, _, _ = _run(corpus, out, "--die-in-save", "3")
    assert code == -signal.SIGKILL
    assert (out / "checkpoints" / "ckpt-30.index").exists()  # the half-written one is on disk,
    assert _latest_checkpoint(out) == 20  # but the index still names the last complete one
    _resume_and_compare(corpus, out, straight, expected_start=20)


def test_ctrl_c_saves_before_exiting_and_the_rerun_resumes_there(corpus, tmp_path, straight):
    out = tmp_path / "run"
    code, _, stderr = _run(corpus, out, "--interrupt-after", "13")  # 3 steps past a checkpoint
    assert code == 130
    # (TensorFlow's start-up lines are there because the fault injector imports it early.)
    said = [line for line in stderr.splitlines() if line.startswith("seqkit:")]
    assert len(said) == 1 and "interrupted; the last checkpoint is in" in said[0], stderr
    assert "Traceback" not in stderr
    assert _latest_checkpoint(out) == 13, "Ctrl-C saved no checkpoint of its own"
    _resume_and_compare(corpus, out, straight, expected_start=13)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A corpus of three documents in a folder: as long as ``corpus`` (100 steps in all)."""
    root = tmp_path_factory.mktemp("folder") / "texts"
    (root / "b").mkdir(parents=True)
    for path in (root / "a.txt", root / "b" / "c.txt", root / "d.txt"):
        path.write_text(SENTENCE * 27, encoding="utf-8")
    return root


def test_ctrl_c_on_a_folder_corpus_resumes_there(folder, tmp_path_factory, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = _run(folder, out, "--interrupt-after", "13")
    assert code == 130 and _latest_checkpoint(out) == 13, stderr
    straight_out = tmp_path_factory.mktemp("straight-folder") / "run"
    code, _, stderr = _run(folder, straight_out)
    assert code == 0, stderr
    straight = json.loads((straight_out / "metrics.json").read_text())["steps"], _weights(straight_out)
    _resume_and_compare(folder, out, straight, expected_start=13)
    assert "Reusing" in _run(folder, out)[1]  # the encoded documents, not read again
