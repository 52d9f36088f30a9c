"""The live progress line: redrawn in place on a terminal, absent elsewhere."""

import io
import os
import pty
import subprocess
import sys

from seqkit.progress import ProgressLine, clock, transfer

SENTENCE = "the quick brown fox jumps over the lazy dog. "


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clock_and_transfer_read_as_a_person_would():
    assert clock(5) == "0:05" and clock(75.4) == "1:15" and clock(3725) == "1:02:05" and clock(-3) == "0:00"
    assert transfer("Reading", 500_000_000, 2_000_000_000, 5.0) == "Reading: 500/2,000 MB, 100 MB/s, ETA 0:15"
    assert transfer("Reading", 0, 10, 0.0).endswith("ETA ?")


def test_the_line_is_redrawn_in_place_and_cleared_before_other_output():
    screen = Terminal()
    line = ProgressLine(screen, interval=0)
    line.show("step 10 | loss 2.5000")
    line.show("step 20 | loss 2.1")
    line.clear()
    assert screen.getvalue() == "\rstep 10 | loss 2.5000\rstep 20 | loss 2.1   " + "\r" + " " * 18 + "\r"


def test_off_a_terminal_nothing_is_drawn():
    plain = io.StringIO()
    line = ProgressLine(plain)
    line.show("step 10", force=True)
    line.clear()
    assert not line.live and plain.getvalue() == ""


def test_train_char_on_a_terminal_shows_step_losses_rate_and_eta(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SENTENCE * 200, encoding="utf-8")
    args = ["train-char", str(corpus), "--out", str(tmp_path / "run"), "--embedding", "8", "--layers", "1"]
    args += ["--units", "16", "--seq-len", "16", "--batch-size", "8", "--max-time", "4", "--eval-every", "100"]
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "seqkit.cli", *args],
        stdout=child,
        stderr=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"},
    )
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=300) == 0, process.stderr.read()
    text = shown.decode()
    live = [part for part in text.split("\r") if part.startswith("step ") and "ETA" in part]
    assert live, text
    assert " | loss " in live[-1] and " chars/s | " in live[-1]
    assert any("val loss" in part for part in live), text  # after the first evaluation
    assert "epoch " in text  # the plain line of each evaluation stays
    assert "Reading (1 of 2): " in text and " MB/s, ETA " in text  # the encoding's own line
