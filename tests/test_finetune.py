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
