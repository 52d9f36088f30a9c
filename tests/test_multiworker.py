"""Multi-worker training: two worker processes on 127.0.0.1, each with its own TF_CONFIG,
train the character model together; both end with identical weights, and the chief's
losses match one process training on the same global batch."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, free_ports

from seqkit.cli import main
from seqkit.machine import cpu_has_bf16

HERE = Path(__file__).parent
SENTENCE = "the quick brown fox jumps over the lazy dog. "
# 16 windows a step (8 on each worker), 12 steps, an evaluation every 4 (of weight averages).
TINY = [
    "--seed",
    "5",
    "--dropout",
    "0",
    "--embedding",
    "8",
    "--layers",
    "1",
    "--units",
    "32",
    "--seq-len",
    "16",
    "--batch-size",
    "16",
    "--epochs",
    "3",
    "--eval-every",
    "4",
    "--lr",
    "0.01",
    "--warmup",
    "2",
    "--ema",
    "0.9",
]
# Relative tolerance on the losses: each worker's half-batch sums in its own order.
LOSS_RTOL = 1e-4
# On a CPU with bf16 dot products train-char's LSTM takes bf16 weight gradients: there those
# sums' last-bit differences flip the bf16 rounding of a few values, and it shows in the weights.
WEIGHT_ATOL = 1e-3 if cpu_has_bf16() else 1e-4


def _start(corpus, out, weights, tf_config=None, *extra) -> subprocess.Popen:
    env = {**os.environ}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    command = [
        sys.executable,
        str(HERE / "seqkit_instrumented.py"),
        "--dump-weights",
        str(weights),
        "--",
        "train-char",
        str(corpus),
        "--out",
        str(out),
        *TINY,
        *extra,
    ]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _losses(out: Path) -> list[float]:
    with open(out / "history.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)] + [
            json.loads((out / "metrics.json").read_text())["val_loss_nats"]
        ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(SENTENCE * 30, encoding="utf-8")
    return path


def test_two_workers_agree_with_each_other_and_with_one_process(corpus, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [
        _start(
            corpus,
            tmp_path / "cluster",
            tmp_path / f"worker{i}.npz",
            {"cluster": cluster, "task": {"type": "worker", "index": i}},
            "--strategy",
            "multi-worker",
        )
        for i in range(2)
    ]
    single = _start(corpus, tmp_path / "single", tmp_path / "single.npz")
    said = []
    for process in (*workers, single):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        said.append(stdout)
    assert "Done: 12 steps" in said[0] and "Worker done: 12 steps" in said[1] and "Done: 12 steps" in said[2]
    chief, other, alone = (np.load(tmp_path / f"{name}.npz") for name in ("worker0", "worker1", "single"))
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], other[key])  # identical on both workers
    np.testing.assert_allclose(_losses(tmp_path / "cluster"), _losses(tmp_path / "single"), rtol=LOSS_RTOL)
    for key in chief.files:
        np.testing.assert_allclose(chief[key], alone[key], rtol=0, atol=WEIGHT_ATOL)
    written = {p.name for p in (tmp_path / "cluster").iterdir()}
    assert {"model.keras", "metrics.json", "checkpoints", "best", "logs"} <= written  # by the chief


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ("", "which is not set"),
        ("{cluster:", "which is malformed"),
        ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "is not one of"),
    ],
)
def test_a_malformed_tf_config_is_one_line(tmp_path, monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    result = CliRunner().invoke(
        main, ["--verbose", "train-char", "c.txt", "--out", str(tmp_path), "--strategy", "multi-worker"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("seqkit: error: --strategy multi-worker reads the cluster from TF_CONFIG")
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_workers_resumed_from_different_steps_end_in_one_line(corpus, tmp_path):
    """Workers whose --out folders hold different checkpoints (no shared filesystem) would
    train apart: each stops before its first step with the catalogue's line."""
    single = _start(corpus, tmp_path / "chief", tmp_path / "single.npz", None, "--epochs", "1")
    assert single.wait(timeout=300) == 0
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        _start(
            corpus,
            tmp_path / ("chief" if i == 0 else f"worker{i}"),
            tmp_path / f"w{i}.npz",
            {"cluster": cluster, "task": {"type": "worker", "index": i}},
            "--strategy",
            "multi-worker",
        )
        for i in range(2)
    ]
    for i, process in enumerate(workers):
        _, stderr = process.communicate(timeout=300)
        said = [line for line in stderr.splitlines() if line.startswith("seqkit:")]
        assert process.returncode == 1 and len(said) == 1, stderr[-3000:]
        step = 4 if i == 0 else 0
        assert said[0] == (
            f"seqkit: error: The workers resumed from different steps (this one from {step}, the mean is 2): "
            "give every worker its --out on a shared filesystem."
        )


def test_a_restarted_cluster_resumes_from_the_chiefs_last_checkpoint(corpus, tmp_path):
    def cluster_run(*extra) -> list[str]:
        ports = free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        workers = [
            _start(
                corpus,
                tmp_path / "cluster",
                tmp_path / f"worker{i}.npz",
                {"cluster": cluster, "task": {"type": "worker", "index": i}},
                "--strategy",
                "multi-worker",
                *extra,
            )
            for i in range(2)
        ]
        said = []
        for process in workers:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
            said.append(stdout)
        return said

    cluster_run("--epochs", "2")  # stops at step 8; the rerun asks for more epochs
    chief, _ = cluster_run("--epochs", "3")
    assert "Resuming at step 8:" in chief and "Done: 12 steps" in chief, chief
    first, second = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
