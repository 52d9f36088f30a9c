"""Fine-tuning: a run that starts from a trained model's weights and vocabulary beats one
from scratch on a little text, keeps the base's vocabulary and shape, and says what it
never saw."""

import json

import pytest

from seqkit.errors import SeqkitError
from seqkit.text.train_char import char_config, check_base, train_char

BASE_TEXT = "the quick brown fox jumps over the lazy dog. " * 80
NEW_TEXT = "the lazy dog jumps over the quick brown fox! Zzz. " * 12


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    (root / "base.txt").write_text(BASE_TEXT, encoding="utf-8")
    config = char_config(embedding=8, layers=1, units=32, seq_len=16, batch_size=8, epochs=4, lr=1e-2, seed=1)
    train_char(root / "base.txt", root / "run", config, verbose=False)
    return root / "run"


def test_fine_tuning_beats_scratch_keeps_the_vocabulary_and_says_what_it_never_saw(base, tmp_path, capsys):
    (tmp_path / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    config = char_config(embedding=8, layers=1, units=32, seq_len=16, batch_size=8, epochs=1, lr=5e-3, seed=2)
    tuned = train_char(tmp_path / "new.txt", tmp_path / "tuned", config, init_from=base)
    said = capsys.readouterr().out
    scratch = train_char(tmp_path / "new.txt", tmp_path / "scratch", config, verbose=False)
    assert tuned["val_loss_nats"] < scratch["val_loss_nats"]
    assert (tmp_path / "tuned" / "vocab.json").read_text() == (base / "vocab.json").read_text()
    saved = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert saved["config"]["init_from"] == str(base.resolve())
    assert f"fine-tuning {base}" in said
    assert 'distinct: "!", "Z") were never seen by the base model' in said


def test_the_bases_shape_wins_and_a_folder_without_a_model_is_refused(base, tmp_path):
    check_base(base, {"units": 32, "cell": None})
    with pytest.raises(SeqkitError, match=r"`units` 64 disagrees with the base model \(1 x lstm 32, embedding 8\)"):
        check_base(base, {"units": 64})
    with pytest.raises(SeqkitError, match="holds no trained model"):
        check_base(tmp_path, {})


def test_extended_rows_start_out_predicting_as_the_base_did(base):
    import dataclasses

    import numpy as np

    from seqkit.text.char_model import build_char_model
    from seqkit.text.train_char import _Base
    from seqkit.text.vocab import Vocabulary

    start = _Base(base)
    vocab = Vocabulary.from_points(np.union1d(start.vocab.points, [ord("Z"), ord("!")]), start.vocab.normalization)
    model = build_char_model(dataclasses.replace(start.config, vocab_size=vocab.size))
    start.initialize(model, vocab)
    text = "the lazy dog"
    before = np.exp(start.model(start.vocab.encode(text)[None]).numpy())
    after = np.exp(model(vocab.encode(text)[None]).numpy())
    before, after = before / before.sum(-1, keepdims=True), after / after.sum(-1, keepdims=True)
    moved = vocab.encode("".join(start.vocab.chars))
    np.testing.assert_allclose(after[..., moved], before[..., 1:], rtol=1e-4, atol=1e-7)
    shared = after[..., [0, *vocab.encode("Z!")]]  # the unknown's probability, in three equal parts
    np.testing.assert_allclose(shared, np.repeat(before[..., :1] / 3, 3, axis=-1), rtol=1e-4, atol=1e-8)


def test_extend_vocab_through_the_command_line(base, tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    args = ["train-char", str(tmp_path / "new.txt"), "--out", str(tmp_path / "run"), "--init-from", str(base)]
    args += ["--extend-vocab", "--seq-len", "16", "--batch-size", "8", "--epochs", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    chars = json.loads((tmp_path / "run" / "vocab.json").read_text())["chars"]
    base_chars = json.loads((base / "vocab.json").read_text())["chars"]
    assert set(chars) == set(base_chars) | {"!", "Z"}
    assert "never seen" not in result.stdout  # they have rows of their own now
