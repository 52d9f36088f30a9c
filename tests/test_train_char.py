"""`train-char` end to end on a tiny corpus: learning, resuming, outputs, and bad input."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from seqkit.core.trainer import Trainer
from seqkit.errors import SeqkitError
from seqkit.text.train_char import CharConfig, char_config, train_char

SENTENCE = "the quick brown fox jumps over the lazy dog. "


def tiny(**overrides) -> CharConfig:
    settings = dict(
        embedding=8, layers=1, units=48, seq_len=16, batch_size=8, eval_every=20, epochs=3, lr=1e-2, warmup_steps=5
    )
    return char_config(**{**settings, **overrides})


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(SENTENCE * 80, encoding="utf-8")
    return path


def _weights(out):
    import keras

    return keras.models.load_model(out / "model.keras").get_weights()


def test_a_tiny_model_learns_a_tiny_corpus_and_writes_its_outputs(corpus, tmp_path):
    out = tmp_path / "run"
    metrics = train_char(corpus, out, tiny(epochs=6), verbose=False)
    assert metrics["val_loss_nats"] < 0.7  # uniform guessing over 28 symbols is 3.3
    assert metrics["val_bits_per_char"] == pytest.approx(metrics["val_loss_nats"] / np.log(2))
    for name in ("config.json", "vocab.json", "metrics.json", "history.csv", "model.keras", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "checkpoint").is_file() and (out / "best" / "checkpoint").is_file()
    assert list((out / "logs").iterdir())
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("val_loss_nats", "val_bits_per_char", "train_chars_per_sec", "steps", "train_seconds"):
        assert saved[key] is not None, key
    assert saved["steps"] == 6 * (((80 * len(SENTENCE) * 9 // 10) - 16) // 16 // 8)
    val_losses = [float(r.split(",")[7]) for r in (out / "history.csv").read_text().splitlines()[1:]]
    assert saved["val_loss_nats"] == pytest.approx(min(val_losses))  # from the best checkpoint


def test_resume_continues_from_the_saved_step_to_the_same_weights(corpus, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_char(corpus, straight, tiny(), verbose=False)

    interrupted = tmp_path / "interrupted"
    original = Trainer._checkpoint

    def interrupt_after_first_checkpoint(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_checkpoint", interrupt_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_char(corpus, interrupted, tiny(), verbose=False)
    monkeypatch.setattr(Trainer, "_checkpoint", original)
    assert not (interrupted / "metrics.json").exists()
    metrics = train_char(corpus, interrupted, tiny(), verbose=False)
    rows = (interrupted / "history.csv").read_text().splitlines()
    assert [int(float(r.split(",")[0])) for r in rows[1:]][:2] == [20, 40]  # resumed at step 20
    assert metrics["steps"] == json.loads((straight / "metrics.json").read_text())["steps"]
    for a, b in zip(_weights(straight), _weights(interrupted)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_an_out_dir_of_another_configuration_is_refused_and_left_alone(corpus, tmp_path):
    out = tmp_path / "run"
    train_char(corpus, out, tiny(epochs=1), verbose=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SeqkitError, match="another configuration.*units"):
        train_char(corpus, out, tiny(epochs=1, units=32), verbose=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert train_char(corpus, out, tiny(epochs=1, units=32), fresh=True, verbose=False)["steps"] > 0


def test_a_run_saved_before_a_model_option_existed_still_resumes(corpus, tmp_path):
    out = tmp_path / "run"
    one_epoch = train_char(corpus, out, tiny(epochs=1), verbose=False)["steps"]
    saved = json.loads((out / "config.json").read_text())
    del saved["identity"]["weight_drop"], saved["identity"]["ema"]  # as written before those options
    (out / "config.json").write_text(json.dumps(saved))
    assert train_char(corpus, out, tiny(epochs=2), verbose=False)["steps"] == 2 * one_epoch
    with pytest.raises(SeqkitError, match="another configuration.*ema"):  # its checkpoints hold no averages
        train_char(corpus, out, tiny(epochs=3, ema=0.99), verbose=False)
    saved["identity"] = ["not", "a", "record"]
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(SeqkitError, match="config.json is damaged"):
        train_char(corpus, out, tiny(epochs=3), verbose=False)


def test_with_weight_averages_the_saved_model_is_the_averaged_one(corpus, tmp_path):
    import keras

    from seqkit.text.char_model import build_char_model
    from seqkit.text.vocab import Vocabulary

    out = tmp_path / "run"
    config = tiny(epochs=1, ema=0.9, val_fraction=0.0)  # no validation: the last averages are kept
    train_char(corpus, out, config, verbose=False)
    trainer = Trainer(
        lambda: build_char_model(config.model_config(Vocabulary.load(out / "vocab.json"))),
        config.train,
        1,
        checkpoint_dir=out,
    )
    assert trainer.restore()
    with trainer.averaged_weights():
        averaged = trainer.model.get_weights()
    saved = keras.models.load_model(out / "model.keras").get_weights()
    for a, b in zip(averaged, saved):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(trainer.model.get_weights(), saved))
    # the decay, like --lr, may change when a run resumes (switching averages on may not: above)
    assert (
        train_char(
            corpus,
            out,
            dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=2, ema=0.95)),
            verbose=False,
        )["steps"]
        == 2 * trainer.step
    )


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env={**os.environ},
        timeout=300,
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"short", "fewer than one window"),
        (b"caf\xe9 " * 100, "byte offset 3 cannot be decoded; if the file uses another encoding"),
    ],
)
def test_bad_corpora_end_in_one_line(tmp_path, content, message):
    path = tmp_path / "c.txt"
    if content is not None:
        path.write_bytes(content)
    result = _cli("train-char", str(path), "--out", str(tmp_path / "out"), "--seq-len", "16")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_an_unwritable_out_ends_in_one_line(corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _cli("train-char", str(corpus), "--out", str(blocker / "run"), "--seq-len", "16")
    assert result.returncode == 1
    assert "Cannot write to --out" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("option", ["--bf16-gradients", "--native-kernels"])
def test_split_steps_on_a_cell_without_the_fused_lstm_end_in_one_line(corpus, tmp_path, option):
    result = _cli(
        "train-char",
        str(corpus),
        "--out",
        str(tmp_path / "run"),
        "--cell",
        "gru",
        option,
        "--units",
        "8",
        "--embedding",
        "4",
        "--seq-len",
        "16",
        "--epochs",
        "1",
    )
    assert result.returncode == 1
    assert "fused LSTM" in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_bf16_recurrence_without_native_kernels_ends_in_one_line(corpus, tmp_path):
    result = _cli(
        "train-char",
        str(corpus),
        "--out",
        str(tmp_path / "run"),
        "--no-native-kernels",
        "--bf16-recurrence",
        "--units",
        "8",
        "--embedding",
        "4",
        "--seq-len",
        "16",
        "--epochs",
        "1",
    )
    assert result.returncode == 1
    assert "bf16 recurrence runs in the native LSTM kernels" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_a_corpus_by_name_comes_from_the_data_directory_and_a_path_wins(tmp_path, monkeypatch, shared_data):
    from seqkit.text.train_char import resolve_corpus

    assert resolve_corpus("tinyshakespeare", shared_data) == shared_data / "tinyshakespeare" / "input.txt"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tinyshakespeare").write_text("my own text", encoding="utf-8")
    assert resolve_corpus("tinyshakespeare", shared_data).resolve() == tmp_path / "tinyshakespeare"  # the path wins
    with pytest.raises(SeqkitError, match="neither a file nor a corpus of the data registry \\(tinyshakespeare\\)"):
        resolve_corpus("shakespear", shared_data)
    assert str(resolve_corpus("missing.txt", shared_data)) == "missing.txt"  # reading it says it is missing
