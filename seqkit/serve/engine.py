"""The serving engine: concurrent sampling requests share the batched steps of one loop.

One thread owns the sampling loop (:func:`seqkit.decode.sampling.sampling_loop`). Between
chunks of steps it takes in new requests (each of its streams takes a free row of the
batch, at the next chunk) and lets finished or abandoned ones go, so that many clients
cost little more than the largest batch. The batch's rows are held as NumPy arrays between
chunks; its capacity grows by powers of two (one compiled program each) and falls back to
one row when the server is idle.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from seqkit.decode.sampling import Filters, Sampler, blank_rows, settings, stream_keys, to_carry
from seqkit.decode.streams import NATIVE_STEP_ROWS, Sample, StreamText, check_stops, compiled_loop


@dataclass(eq=False)  # a job is itself: compared by identity
class Job:
    """One request's streams in the engine.

    ``on_text(stream, text)`` is called (on the engine's thread) with each piece of text
    once it is settled; ``on_done(samples)`` once every stream has ended, or
    ``on_error(err)``. Setting ``cancelled`` frees its rows at the next chunk.
    """

    primes: list[np.ndarray]
    length: int
    sampler: Sampler
    seed: int
    stop: list[str]
    include_stop: bool
    on_done: Callable[[list[Sample]], None]
    on_text: Callable[[int, str], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    cancelled: bool = False
    texts: list[StreamText] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


class Engine:
    """The sampling engine of a loaded :class:`~seqkit.decode.lm.CharLM`.

    Args:
        lm: the model.
        max_rows: the largest batch; requests beyond it wait for free rows.
        max_prime: the longest prime, in characters.
        chunk: steps between two looks at the requests (shorter: text arrives sooner).
    """

    def __init__(self, lm, max_rows: int = 256, max_prime: int = 1024, chunk: int = 32):
        self.lm, self.max_rows, self.chunk = lm, max_rows, chunk
        self.width = max(16, 1 << (max_prime - 1).bit_length())
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.waiting: list[Job] = []
        self.active: list[Job] = []
        self.capacity = 0
        self.rows: dict[str, np.ndarray] = {}
        self.owner: list[Job | None] = []
        self.stream_of: list[int] = []
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="seqkit-engine", daemon=True)
        self._thread.start()

    # -- the requests' side ------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        check_stops(self.lm, job.stop)
        job.texts = [StreamText(job.length, job.stop, job.include_stop) for _ in job.primes]
        self.jobs.put(job)
        self._wake.set()
        return job

    def warm(self, capacities: list[int]) -> None:
        """Compile the loop for these batch sizes now, before the first request waits for it
        (and build the native step where it runs, once per machine)."""
        for capacity in capacities:
            self._chunk(blank_rows(self.lm, capacity, self.width), capacity)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)

    # -- the engine's thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._take_in()
            if not self.active:
                self._resize(0)
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                self._step()
            except Exception as err:  # noqa: BLE001 (each request gets the error; the engine goes on)
                for job in self.active:
                    if job.on_error is not None:
                        job.on_error(err)
                self.active, self.waiting = [], []
                self._resize(0)

    def _take_in(self) -> None:
        while True:
            try:
                self.waiting.append(self.jobs.get_nowait())
            except queue.Empty:
                break
        self._let_go([job for job in self.active if job.cancelled])
        self.waiting = [job for job in self.waiting if not job.cancelled]
        while self.waiting:
            job = self.waiting[0]
            busy = sum(len(j.rows) for j in self.active)
            if busy + len(job.primes) > self.max_rows and self.active:
                break  # it waits for rows to come free
            self._resize(max(1, busy + len(job.primes)))
            self.waiting.pop(0)
            self._place(job)

    def _resize(self, needed: int) -> None:
        """Hold at least ``needed`` rows (a power of two), keeping the rows in use; no rows
        at all when ``needed`` is 0."""
        capacity = 0 if needed == 0 else 1 << (needed - 1).bit_length()
        if capacity == self.capacity or (0 < capacity < self.capacity):
            return
        old, count = self.rows, self.capacity
        self.capacity = capacity
        self.rows = blank_rows(self.lm, capacity, self.width)
        self.owner = (self.owner + [None] * capacity)[:capacity] if capacity else []
        self.stream_of = (self.stream_of + [0] * capacity)[:capacity] if capacity else []
        if capacity and count:
            for name, values in old.items():
                self.rows[name][:count] = values

    def _clear(self, row: int) -> None:
        """Make ``row`` blank again (zero states, plain sampling)."""
        for name, value in blank_rows(self.lm, 1, self.width).items():
            self.rows[name][row] = value[0]

    def _place(self, job: Job) -> None:
        free = [row for row, owner in enumerate(self.owner) if owner is None]
        keys = stream_keys(job.seed, np.arange(len(job.primes))).numpy()
        job.rows = free[: len(job.primes)]
        one = settings([job.sampler])
        for stream, (row, ids) in enumerate(zip(job.rows, job.primes)):
            self._clear(row)
            self.rows["prime"][row] = 0
            self.rows["prime"][row, : ids.size] = ids
            self.rows["prime_length"][row] = ids.size
            self.rows["keys"][row] = keys[stream]
            for name, value in one.items():
                self.rows[name][row] = value[0]
            self.owner[row], self.stream_of[row] = job, stream
        self.active.append(job)

    def _let_go(self, jobs: list[Job]) -> None:
        for job in jobs:
            for row in job.rows:
                self.owner[row] = None
                self._clear(row)  # a free row asks for no filter
            job.rows = []
        self.active = [job for job in self.active if job not in jobs]

    def _chunk(self, rows: dict[str, np.ndarray], capacity: int):
        """One chunk of steps of ``rows`` (a batch of ``capacity``)."""
        native = capacity < NATIVE_STEP_ROWS and self.lm.steps_natively()
        # The filters the rows ask for: a batch of plain samplers leaves out top-k's and
        # top-p's sorts (free rows ask for none).
        return compiled_loop(self.lm, Filters.of_settings(rows), native)(to_carry(rows), self.chunk)

    def _step(self) -> None:
        lm = self.lm
        after, drawn, scores = self._chunk(self.rows, self.capacity)
        for i, state in enumerate(after["states"]):
            self.rows[f"state{i}"] = state.numpy()
        self.rows["log_probs"], self.rows["position"] = after["log_probs"].numpy(), after["position"].numpy()
        drawn, scores = drawn.numpy(), scores.numpy()
        finished = []
        for job in self.active:
            for row in job.rows:
                stream = self.stream_of[row]
                new = job.texts[stream].take(lm.vocab, drawn[row], scores[row])
                if job.on_text is not None and new:
                    job.on_text(stream, new)
            if all(t.done for t in job.texts):
                finished.append(job)
        self._let_go(finished)
        for job in finished:
            job.on_done([t.sample() for t in job.texts])
