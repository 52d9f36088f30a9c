"""The habits that keep the codebase readable: ruff's lint and format, and the import rules
of pyproject.toml (the core knows no application, decoding no trainer, nothing imports the
CLI, the MNIST benchmark and the character model stay apart)."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

TREES = ["seqkit", "tests", "benchmarks", "scripts"]


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize("check", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(check):
    result = _run(sys.executable, "-m", "ruff", *check, *TREES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = _run(str(lint_imports), str(REPO / "pyproject.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
