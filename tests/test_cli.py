"""The command line, through click's test runner and (for exit codes and stderr) a real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from conftest import REPO

from seqkit.cli import main


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
    result = _seqkit("export")
    assert result.returncode == 2
    assert "Missing option '--out'" in result.stderr and "Traceback" not in result.stderr


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


def test_a_baseline_made_with_other_settings_is_refused_before_any_training(tmp_path):
    baseline = tmp_path / "base.json"
    figures = {"config": {"batch_size": 1}, "test_accuracy": 0.9, "train_samples_per_sec": 1.0, "machine_gflops": 1.0}
    baseline.write_text(json.dumps(figures))
    result = _seqkit("bench", "mnist", "--quick", "--data-dir", str(tmp_path / "no-data"), "--baseline", str(baseline))
    assert result.returncode == 1 and "baseline was made with other settings" in result.stderr  # not "no data"


def test_quick_benchmark_of_an_installed_seqkit_compares_with_the_shipped_baseline(installed, tmp_path, shared_data):
    """The CI profile of the regression benchmark, run by a non-editable install from
    another folder, against the baseline shipped for its code path."""
    out = tmp_path / "quick.json"
    png = tmp_path / "quick.png"
    env = {**os.environ, "PYTHONPATH": str(installed), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "seqkit.cli", "bench", "mnist", "--quick", "--json", str(out), "--plot", str(png)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    for key in ("test_accuracy", "test_loss", "train_seconds", "train_samples_per_sec", "code_path", "config"):
        assert key in figures
    assert figures["test_accuracy"] >= 0.95
    baseline = Path(figures["comparison"]["baseline"])
    assert baseline.is_relative_to(installed) and baseline.name.startswith("mnist-quick-")
    assert figures["comparison"]["speed"] and "Comparing with the quick baseline of this code path" in result.stderr
    assert "test accuracy" in result.stdout and "speed vs baseline" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_quick_start_and_ci_run_the_same_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.split("```")[1].strip().splitlines() if line.strip()]
    assert len(commands) == 2 and "seqkit bench mnist" in commands[0]
    assert commands[1] in ci
