"""A live progress line for a terminal.

On a terminal one line is redrawn in place (at most a few times a second) and erased
before any other output, so log lines scroll above it. Elsewhere (CI, a log file) it
draws nothing and the caller's plain log lines are all there is. Written here rather than
with Keras's ``Progbar`` because its estimate counts steps only, while a run bounded by
``max_time`` ends by the clock.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """Seconds as ``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressLine:
    """One redrawn line on a terminal; nothing elsewhere.

    Args:
        stream: where to draw; the line is live only when it is a terminal.
        live: force the line on or off (None: on for a terminal).
        interval: the least seconds between two redraws.
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, interval: float = 0.25):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self._shown = 0
        self._last = -float("inf")

    def due(self) -> bool:
        """Whether :meth:`show` would draw now: a caller whose text costs something to make
        asks first."""
        return self.live and time.monotonic() - self._last >= self.interval

    def show(self, text: str, force: bool = False) -> None:
        """Draw ``text`` in place of the line (skipped when the last draw was too recent)."""
        if not (self.live and force) and not self.due():
            return
        self._last = time.monotonic()
        width = _columns(self.stream) - 1
        text = text[:width]
        self.stream.write("\r" + text + " " * max(0, self._shown - len(text)))
        self.stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        """Erase the line, so that what is printed next starts at the left margin."""
        if self.live and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
            self._last = -float("inf")


def _columns(stream: TextIO) -> int:
    import os

    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 100


def transfer(label: str, done: int, total: int, seconds: float) -> str:
    """``label: 812/2,048 MB, 150 MB/s, ETA 0:08``: a pass over ``total`` bytes."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = clock((total - done) / rate) if rate > 0 else "?"
    return f"{label}: {done / 1e6:,.0f}/{total / 1e6:,.0f} MB, {rate / 1e6:,.0f} MB/s, ETA {eta}"
