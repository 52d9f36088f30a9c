"""Building seqkit's C++ kernels: what a failed, stopped or slow build leaves behind, and
what runs instead, said once, when a machine cannot build them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqkit.core import native
from seqkit.errors import SeqkitError

SENTENCE = "the quick brown fox jumps over the lazy dog. "
TINY = ["--embedding", "8", "--layers", "1", "--units", "32", "--seq-len", "16", "--batch-size", "8"]


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "seqkit" / "kernels"


def _compiler(folder: Path, body: str, monkeypatch) -> Path:
    """A stand-in for the C++ compiler that answers --version and then runs ``body``."""
    script = folder / "fake-c++"
    script.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "fake c++ 1.0"; exit 0; fi\n{body}\n')
    script.chmod(0o755)
    monkeypatch.setenv("CXX", str(script))
    return script


def test_a_compiler_error_is_recorded_so_that_no_process_builds_again(cache, tmp_path, monkeypatch):
    _compiler(tmp_path, 'echo "lstm_kernel.cc:1:1: error: no such thing" >&2; exit 1', monkeypatch)
    with pytest.raises(SeqkitError, match="error: no such thing"):
        native._build_and_load(native.LOOPS)
    (failed,) = cache.glob("lstm-*.failed")
    assert "error: no such thing" in failed.read_text()
    with pytest.raises(SeqkitError, match=f"delete {failed} to retry"):
        native._build_and_load(native.LOOPS)


def test_a_compiler_killed_by_a_signal_leaves_no_record(cache, tmp_path, monkeypatch):
    _compiler(tmp_path, "kill -9 $$", monkeypatch)
    with pytest.raises(SeqkitError, match="stopped by signal 9"):
        native._build_and_load(native.LOOPS)
    assert not list(cache.glob("*.failed")) and not list(cache.glob("*.so"))


def test_a_build_that_times_out_is_recorded(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(native, "BUILD_TIMEOUT_S", 1)
    _compiler(tmp_path, "exec sleep 30", monkeypatch)
    with pytest.raises(SeqkitError, match="took over 1 s"):
        native._build_and_load(native.LOOPS)
    (failed,) = cache.glob("lstm-*.failed")
    assert "took over 1 s" in failed.read_text()


def _seqkit(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_without_a_compiler_training_and_sampling_run_xla_and_say_so_once(tmp_path):
    """No compiler (CXX names nothing) and an empty kernel cache: train-char trains with
    XLA's loops, generate samples with XLA's step, and each says why in one note."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SENTENCE * 40, encoding="utf-8")
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-compiler"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    out = tmp_path / "run"
    trained = _seqkit("train-char", str(corpus), "--out", str(out), *TINY, "--epochs", "1", env=env)
    assert trained.returncode == 0, trained.stderr
    start = next(line for line in trained.stdout.splitlines() if line.startswith("Training"))
    assert "native LSTM kernels" not in start
    assert [line for line in trained.stderr.splitlines() if line.startswith("note:")] == [
        "note: Building seqkit's native LSTM kernels needs a C++ compiler (set CXX, or install g++); LSTM layers run "
        "XLA's loops instead."
    ]
    sampled = _seqkit("generate", "--model", str(out), "--prime", "the ", "--length", "20", env=env)
    assert sampled.returncode == 0, sampled.stderr
    assert [line for line in sampled.stderr.splitlines() if line.startswith("note:")] == [
        "note: Building seqkit's native decoding step needs a C++ compiler (set CXX, or install g++); sampling runs "
        "XLA's step instead."
    ]
