"""The command line, through click's test runner and (for exit codes and stderr) a real process."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO

from seqkit.cli import main
from seqkit.errors import SeqkitError
from seqkit.mnist import bench


def _seqkit(*args, env=None):
    """Run the real `seqkit` entry point in a fresh process (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=600,
    )


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("train-char", "generate", "score", "export", "bench"):
        assert command in result.output
    assert "mnist" in CliRunner().invoke(main, ["bench", "--help"]).output


def test_a_missing_required_option_is_a_usage_error():
    result = _seqkit("generate")
    assert result.returncode == 2
    assert "Missing option '--model'" in result.stderr and "Traceback" not in result.stderr


def test_missing_data_is_one_line_and_exit_1(tmp_path):
    """No MNIST and no network: one sentence, no traceback, and no TensorFlow noise."""
    closed_port = {"SEQKIT_MIRROR": "http://127.0.0.1:9"}
    result = _seqkit("bench", "mnist", "--quick", "--data-dir", str(tmp_path), "--no-baseline", env=closed_port)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("seqkit: error: mnist/") and "could not be downloaded" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_impossible_option_values_are_usage_errors():
    result = CliRunner().invoke(main, ["bench", "mnist", "--units", "0"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["bench", "mnist", "--dropout", "1.5"])
    assert result.exit_code == 2


def test_a_baseline_made_with_other_settings_is_refused(tmp_path, shared_data):
    baseline = tmp_path / "base.json"
    baseline.write_text(
        json.dumps(
            {"config": {"batch_size": 1}, "test_accuracy": 0.9, "train_samples_per_sec": 1.0, "machine_gflops": 1.0}
        )
    )
    result = _seqkit("bench", "mnist", "--quick", "--train-subset", "640", "--baseline", str(baseline))
    assert result.returncode == 1
    assert "baseline was made with other settings" in result.stderr


def test_a_baseline_made_before_a_setting_existed_is_still_compared():
    config = bench.profile_config("quick")
    result = {
        "config": config.comparable(),
        "test_accuracy": 0.97,
        "train_samples_per_sec": 100.0,
        "machine_gflops": 10.0,
    }
    older = config.comparable()
    del older["train"]["ema"], older["model"]["bidirectional"]  # settings added since, at their defaults
    assert bench.baseline_settings({"config": older}) == config.comparable()
    assert not bench.compare(result, {**result, "config": older}, config).failures
    older["train"]["lr"] = 1.0
    with pytest.raises(SeqkitError, match=r"other settings \(train differ\)"):
        bench.compare(result, {**result, "config": older}, config)
    with pytest.raises(SeqkitError, match="lacks seqkit bench figures"):
        bench.compare(result, {"test_accuracy": 0.97}, config)


def test_quick_benchmark_reaches_its_target_and_matches_the_baseline(tmp_path, shared_data):
    """The CI profile of the regression benchmark, against the committed baseline."""
    out = tmp_path / "quick.json"
    png = tmp_path / "quick.png"
    result = _seqkit("bench", "mnist", "--quick", "--json", str(out), "--plot", str(png))
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    for key in ("test_accuracy", "test_loss", "train_seconds", "train_samples_per_sec", "epochs", "config"):
        assert key in figures
    assert figures["test_accuracy"] >= 0.95
    assert figures["comparison"]["baseline"].endswith("benchmarks/mnist-quick.json")
    assert "test accuracy" in result.stdout and "speed vs baseline" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_accuracy_regression_fails_loudly(tmp_path, shared_data):
    """A baseline far above what a tiny run can reach must make the bench exit 1."""
    out = tmp_path / "tiny.json"
    args = ["bench", "mnist", "--quick", "--train-subset", "640", "--no-baseline", "--json", str(out)]
    assert _seqkit(*args).returncode == 0
    figures = json.loads(out.read_text())
    figures["test_accuracy"] = 0.999
    (tmp_path / "base.json").write_text(json.dumps(figures))
    result = _seqkit("bench", "mnist", "--quick", "--train-subset", "640", "--baseline", str(tmp_path / "base.json"))
    assert result.returncode == 1
    assert "REGRESSION: test_accuracy" in result.stderr


def test_readme_quick_start_and_ci_run_the_same_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.split("```")[1].strip().splitlines() if line.strip()]
    assert len(commands) == 2 and "seqkit bench mnist" in commands[0]
    assert commands[1] in ci
