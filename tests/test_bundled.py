"""The model in the box: it loads like any run folder, reproduces the loss its card
records, serves the commands that leave out --model, stays small in the wheel, and a
damaged copy is one line naming the file and the remedy."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO, REQUIRE_DATA, data_root

from seqkit.text import bundled

WHEEL_BOUND = 4_500_000  # bytes the bundled model may add to the wheel
CATALOGUE = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8").replace("`", "")


def _seqkit(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def test_the_bundled_model_loads_and_reproduces_the_loss_on_its_card():
    from seqkit.decode import CharLM, score

    (model,) = bundled.models()
    assert model.name == bundled.DEFAULT and model.path == bundled.path()
    lm = CharLM.load(model.path)
    card = model.card
    assert lm.model.count_params() == card["parameters"]
    corpus = data_root() / "tinyshakespeare" / "input.txt"
    if not corpus.is_file():
        if REQUIRE_DATA:
            pytest.fail(f"no Tiny Shakespeare in {data_root()}, and SEQKIT_REQUIRE_DATA asks for it")
        pytest.skip("needs Tiny Shakespeare in SEQKIT_DATA_DIR")
    check = card["check"]
    text = corpus.read_text(encoding="utf-8")[check["start"] : check["start"] + check["characters"]]
    assert abs(score(lm, text)["nats_per_char"] - check["nats_per_char"]) < 1e-4


def test_generate_without_a_model_uses_the_bundled_one_and_says_so_once(tmp_path):
    result = _seqkit("generate", "--prime", "The quick brown f", "--tree", "--depth", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"Using the bundled model {bundled.DEFAULT} (seqkit models); --model picks your own."
    ]
    assert "p=" in result.stdout and "path=" in result.stdout
    scored = _seqkit("score", "To be, or not to be", "--json", cwd=tmp_path)
    assert scored.returncode == 0 and json.loads(scored.stdout)["nats_per_char"] < 3.0


def test_models_lists_the_bundled_model_and_its_card():
    result = _seqkit("models")
    assert result.returncode == 0, result.stderr
    card = bundled.models()[0].card
    assert result.stdout.startswith(f"{bundled.DEFAULT} (default): {card['description']}")
    assert f"folder:  {bundled.path()}" in result.stdout and card["command"] in result.stdout


def test_the_wheel_carries_the_model_within_its_bound(tmp_path):
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*pip, str(REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("seqkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = {i.filename: i.compress_size for i in archive.infolist() if "/models/shakespeare/" in i.filename}
    names = {name.rsplit("/", 1)[1] for name in files}
    assert names == {"model.keras", "vocab.json", "config.json", "metrics.json", "card.json", "CARD.md"}
    assert sum(files.values()) <= WHEEL_BOUND


def test_a_damaged_bundled_model_names_the_file_and_the_remedy(installed, tmp_path):
    """A truncated model.keras, as a broken install would leave it."""
    import shutil

    copy = tmp_path / "site"
    shutil.copytree(installed, copy)
    model = copy / "seqkit" / "data" / "models" / bundled.DEFAULT / "model.keras"
    model.write_bytes(model.read_bytes()[:1000])
    result = _seqkit("generate", "--prime", "The", env={"PYTHONPATH": str(copy)}, cwd=tmp_path)
    said = result.stderr.splitlines()
    line = (
        f"seqkit: error: The bundled model's {model} is missing or damaged: reinstall seqkit "
        "(pip install --force-reinstall seqkit)."
    )
    assert result.returncode == 1 and said[-1] == line, result.stderr
    assert len(said) == 2 and "Traceback" not in result.stderr  # the line saying which model, then this
    assert "| The bundled model's ... is missing or damaged: reinstall seqkit (pip install --force-reinstall " in (
        CATALOGUE
    )
