"""Many samples at once: a batch of streams stepped together, each finishing on its own.

:func:`generate` samples N streams in one compiled loop (:func:`~seqkit.decode.sampling.
sampling_loop`): one prime for all or one per stream, one sampler for all or one per
stream. The loop runs in chunks of steps; between chunks each stream's new characters are
checked against its length and stop strings, handed to ``on_text`` as they are settled,
and finished streams are done. Stream ``i`` of a seed draws from its own random stream, so
its text is the same whatever else runs beside it (up to float rounding, which can differ
between a batch's matrix products and one row's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from seqkit.decode.sampling import Filters, Sampler, sampling_loop, start_carry, stream_keys
from seqkit.errors import SeqkitError
from seqkit.text.vocab import describe

CHUNK = 32  # steps a call, where streams may stop early or their text is shown as it comes
# The native decoding step multiplies each row by the weights on its own (it is built for
# one stream); from this many streams on, the batch's steps are one matrix product each
# (benchmarks/README.md, "Many streams at once").
NATIVE_STEP_ROWS = 8
MEMORY_SHARE = 0.5  # of the memory available now, at most, for a batch's buffers


@dataclass
class Sample:
    """One stream's result: its text (the stop string left out, unless asked for), the
    untempered model's log-probability of that text in nats, and the stop string that ended
    it (None where it ran to its length)."""

    text: str
    log_prob: float
    stop: str | None = None

    def to_dict(self) -> dict:
        return {"text": self.text, "log_prob": self.log_prob, "stop": self.stop}


def unescape(stop: str) -> str:
    """A stop string as typed on a command line: ``\\n``, ``\\t`` and ``\\\\`` understood."""
    return stop.encode("latin-1", "backslashreplace").decode("unicode_escape")


def check_stops(lm, stops: Sequence[str]) -> list[str]:
    """Stop strings a model can produce, or a :class:`SeqkitError` saying why one cannot."""
    for stop in stops:
        if not stop:
            raise SeqkitError("A stop string (`stop`) must not be empty.")
        unknown = lm.vocab.unknown_chars(stop)
        if unknown:
            raise SeqkitError(
                f"The stop string {stop!r} has characters the model never saw ({describe(unknown)}): it could "
                "never match."
            )
    return list(stops)


def bytes_per_stream(lm, steps: int) -> int:
    """What one stream of a batch holds while it runs: its states (in and out), the
    layers' gate activations, its prime and the step's outputs (float32, int32)."""
    encoder = lm.encoder
    units = sum(encoder.state_size)
    gates = 4 * encoder.units * encoder.layers
    return 4 * (3 * units + 2 * gates + 3 * lm.vocab.size + 3 * steps + 64)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_batch(lm, streams: int, steps: int) -> None:
    """Refuse a batch whose buffers would not fit in memory, with the figures."""
    if streams < 1:
        raise SeqkitError(f"`num_samples` must be at least 1, got {streams}.")
    need, have = streams * bytes_per_stream(lm, steps), available_memory()
    if have is not None and need > MEMORY_SHARE * have:
        most = int(MEMORY_SHARE * have // bytes_per_stream(lm, steps))
        raise SeqkitError(
            f"{streams:,} streams would need about {need / 2**30:.1f} GiB, more than half of the "
            f"{have / 2**30:.1f} GiB available: ask for at most {most:,} (`num_samples`)."
        )


class StreamText:
    """One stream's text as it grows: where it stops, and what of it is settled."""

    def __init__(self, length: int, stops: list[str], include_stop: bool):
        self.length, self.stops, self.include_stop = length, stops, include_stop
        self.chars: list[str] = []
        self.scores: list[float] = []
        self.done, self.stop, self.shown = False, None, 0
        self.hold = max((len(s) for s in stops), default=1) - 1  # a stop string may still be forming

    def extend(self, chars: list[str], scores: list[float]) -> None:
        if self.done:
            return
        before = len(self.chars)
        self.chars += chars[: self.length - before]
        self.scores += scores[: self.length - before]
        text = "".join(self.chars)
        found = [(text.find(s, max(0, before - len(s) + 1)), s) for s in self.stops]
        found = [(at, s) for at, s in found if at >= 0]
        if found:
            at, stop = min(found, key=lambda hit: (hit[0], -len(hit[1])))
            end = at + len(stop) if self.include_stop else at
            del self.chars[end:], self.scores[end:]
            self.done, self.stop = True, stop
        elif len(self.chars) >= self.length:
            self.done = True

    def take(self, vocab, drawn: np.ndarray, scores: np.ndarray) -> str:
        """Take in one row of a chunk's output (ids drawn, -1 while priming, and their
        scores); return the text it settles."""
        kept = drawn >= 0
        self.extend(list(vocab.decode(drawn[kept])), scores[kept].tolist())
        return self.settled()

    def settled(self) -> str:
        """The characters no stop string can still take back, not shown before."""
        upto = len(self.chars) if self.done else max(self.shown, len(self.chars) - self.hold)
        new, self.shown = "".join(self.chars[self.shown : upto]), upto
        return new

    def sample(self) -> Sample:
        return Sample("".join(self.chars), float(math.fsum(self.scores)), self.stop)


def generate(
    lm,
    primes: Sequence[np.ndarray],
    length: int | Sequence[int],
    samplers: Sampler | Sequence[Sampler] | None = None,
    seed: int = 0,
    stop: Sequence[str] = (),
    include_stop: bool = False,
    on_text: Callable[[int, str], None] | None = None,
    num_samples: int | None = None,
    first_stream: int = 0,
) -> list[Sample]:
    """Sample streams from a :class:`~seqkit.decode.lm.CharLM`, all in one compiled loop.

    Args:
        primes: the prime ids of each stream (from ``lm.encode_prime``); one prime for
            ``num_samples`` streams, or one per stream.
        length: characters to draw for each stream (one for all, or one per stream).
        samplers: one :class:`Sampler` for all streams, or one per stream (default: plain
            sampling at temperature 1).
        seed: stream ``i`` draws from random stream ``first_stream + i`` of ``seed``.
        stop: stop strings; a stream ends when it has produced any of them.
        include_stop: keep the stop string at the end of the text.
        on_text: called as ``on_text(stream, new_text)`` while the streams run, with each
            piece of text once it is settled (no stop string can take it back).
        num_samples: streams of the one prime (default: one per prime).
    """
    primes = list(primes)
    if not primes:
        raise SeqkitError("Give at least one prime (`primes`).")
    if num_samples is not None and len(primes) != 1:
        raise SeqkitError("Give one prime for `num_samples` streams, or one prime per stream.")
    count = len(primes) if num_samples is None else num_samples
    longest = length if isinstance(length, int) else max(length, default=0)
    check_batch(lm, count, max(p.size for p in primes) + longest)  # before any list of that size
    primes = primes * (count // len(primes))
    lengths = [length] * count if isinstance(length, int) else list(length)
    samplers = samplers or Sampler()
    samplers = [samplers] * count if isinstance(samplers, Sampler) else list(samplers)
    if len(lengths) != count or len(samplers) != count:
        raise SeqkitError("Give one `length` and one sampler for all streams, or one per stream.")
    if min(lengths) < 1:
        raise SeqkitError("`length` must be at least 1.")
    stops = check_stops(lm, stop)
    widest = max(p.size for p in primes)
    texts = [StreamText(n, stops, include_stop) for n in lengths]
    carry = start_carry(lm, primes, stream_keys(seed, np.arange(first_stream, first_stream + count)), samplers)
    loop = compiled_loop(lm, Filters.of(samplers), native=count < NATIVE_STEP_ROWS and lm.steps_natively())
    whole = not stops and on_text is None  # one call does it all
    steps = widest + max(lengths) if whole else CHUNK
    while not all(t.done for t in texts):
        carry, drawn, scores = loop(carry, steps)
        drawn, scores = drawn.numpy(), scores.numpy()
        for row, text in enumerate(texts):
            new = text.take(lm.vocab, drawn[row], scores[row])
            if on_text is not None and new:
                on_text(row, new)
        steps = CHUNK
    return [t.sample() for t in texts]


def compiled_loop(lm, filters: Filters, native: bool):
    """``run(carry, steps)``: the compiled loop of ``lm`` for samplers that need
    ``filters``, with the native decoding step (its weights packed once, outside the loop)
    or the cells' own. The compiled programs are kept on the model."""
    key = ("streams", filters, native)
    if key not in lm.sample_loops:

        @tf.function(reduce_retracing=True, autograph=False, jit_compile=True)
        def loop(carry, steps, packed):
            return sampling_loop(lm, filters, steps, carry, packed or None)

        lm.sample_loops[key] = loop
    loop = lm.sample_loops[key]
    packed = lm.packed_step_weights() if native else []
    return lambda carry, steps: loop(carry, tf.constant(steps), packed)
