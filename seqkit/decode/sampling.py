"""Sampling: the strategies that pick the next character, and the one loop that uses them.

``filter_logits`` turns a distribution into the one a strategy samples from (temperature,
top-k, top-p, and never the unknown id); a :class:`Sampler` holds one stream's settings.
:func:`sampling_loop` is the only sampling loop. It steps a batch of streams, each with its
own prime, settings and random stream, for a number of steps, and can be called again
where it stopped: :class:`~seqkit.decode.streams.Streams` runs it in chunks (streams finish
and join between chunks), ``seqkit generate`` through it, and the exported SavedModel's
``sample`` signature traces it too, so every setting behaves alike everywhere.

Random numbers are counter-based: draw ``n`` of stream ``i`` of a seed is a hash of
(seed, i, n), the same in XLA and TensorFlow, so a stream's text never depends on which
other streams run beside it, in which row, or how the loop is cut into chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from seqkit.errors import SeqkitError
from seqkit.text.vocab import UNKNOWN_ID

_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment


def mask_unknown(logits: tf.Tensor) -> tf.Tensor:
    """Logits [batch, vocab] with the unknown id at -inf: it is never drawn or searched."""
    neg_inf = tf.fill(tf.shape(logits), tf.constant(-float("inf"), logits.dtype))
    return tf.where(tf.range(tf.shape(logits)[-1])[None, :] == UNKNOWN_ID, neg_inf, logits)


def _is(value, constant) -> bool:
    """Whether ``value`` is the Python number ``constant`` (a tensor never is)."""
    return isinstance(value, (int, float)) and value == constant


def _column(value, dtype, rows) -> tf.Tensor:
    """A setting, one value for all rows or one per row, as a column [rows, 1]."""
    return tf.broadcast_to(tf.reshape(tf.cast(value, dtype), [-1, 1]), [rows, 1])


def filter_logits(logits: tf.Tensor, temperature=1.0, top_k=0, top_p=1.0) -> tf.Tensor:
    """Logits [batch, vocab] tempered, with the excluded ids at -inf (``top_k`` 0 and
    ``top_p`` 1 exclude none). Each setting is a number, or a tensor of one value per row
    ([batch]); a Python 0 or 1 leaves its filter out of the graph."""
    rows, vocab = tf.shape(logits)[0], tf.shape(logits)[-1]
    if not _is(temperature, 1.0):
        logits = logits / _column(temperature, logits.dtype, rows)
    logits = mask_unknown(logits)
    neg_inf = tf.fill(tf.shape(logits), tf.constant(-float("inf"), logits.dtype))
    if not _is(top_k, 0):
        k = _column(top_k, tf.int32, rows)
        ordered = tf.sort(logits, direction="DESCENDING")
        kth = tf.gather(ordered, tf.clip_by_value(k, 1, vocab) - 1, axis=1, batch_dims=1)
        logits = tf.where((k > 0) & (logits < kth), neg_inf, logits)
    if not _is(top_p, 1.0):
        top_p = _column(top_p, logits.dtype, rows)
        ordered = tf.sort(logits, direction="DESCENDING")
        mass_before = tf.math.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
        # keep the smallest prefix whose mass reaches top_p (the top id is always kept)
        kept = tf.where((mass_before < top_p) | (top_p >= 1.0), ordered, neg_inf)
        inf = tf.fill(tf.shape(kept), float("inf"))
        threshold = tf.reduce_min(tf.where(tf.math.is_inf(kept), inf, kept), -1, keepdims=True)
        logits = tf.where(logits < threshold, neg_inf, logits)
    return logits


@dataclass(frozen=True)
class Sampler:
    """How one stream chooses its next character.

    Args:
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: sample among the k most likely characters only (0: all).
        top_p: sample among the most likely characters holding this much mass (1: all).
        greedy: always take the most likely character.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise SeqkitError("`temperature` must be above 0; for the most likely characters use `greedy`.")
        if self.top_k < 0:
            raise SeqkitError("`top_k` must be 0 (off) or more.")
        if not 0.0 < self.top_p <= 1.0:
            raise SeqkitError("`top_p` must be in (0, 1].")


@dataclass(frozen=True)
class Filters:
    """Which filters a batch of samplers needs at all: the compiled loop leaves out the
    sorts that no stream of it asks for (part of the loop's cache key)."""

    top_k: bool
    top_p: bool
    greedy: bool

    @classmethod
    def of(cls, samplers) -> Filters:
        return cls.of_settings(settings(samplers))

    @classmethod
    def of_settings(cls, rows: dict) -> Filters:
        """The filters of rows of :func:`settings` (NumPy arrays)."""
        return cls(bool((rows["top_k"] > 0).any()), bool((rows["top_p"] < 1).any()), bool(rows["greedy"].any()))


def settings(samplers) -> dict[str, np.ndarray]:
    """The samplers' settings, one row each, as the loop takes them."""
    return {
        "temperature": np.array([s.temperature for s in samplers], np.float32),
        "top_k": np.array([s.top_k for s in samplers], np.int32),
        "top_p": np.array([s.top_p for s in samplers], np.float32),
        "greedy": np.array([s.greedy for s in samplers], bool),
    }


# -- random numbers -----------------------------------------------------------------------------
def _u64(value: int) -> tf.Tensor:
    return tf.constant(value & 0xFFFFFFFFFFFFFFFF, tf.uint64)


def _mix(z: tf.Tensor) -> tf.Tensor:
    """SplitMix64's finalizer: a bijection of uint64 that scatters neighbouring inputs."""
    z = z + _u64(_GOLDEN)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(30))) * _u64(0xBF58476D1CE4E5B9)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(27))) * _u64(0x94D049BB133111EB)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(31)))


def stream_keys(seed, streams) -> tf.Tensor:
    """The random key of each stream ``streams`` [batch] of ``seed``: uint64 [batch]."""
    seed = tf.cast(tf.convert_to_tensor(seed, tf.int64), tf.uint64)
    streams = tf.cast(tf.convert_to_tensor(streams, tf.int64), tf.uint64)
    return _mix(_mix(seed) + streams * _u64(_GOLDEN))


def uniforms(keys: tf.Tensor, counters: tf.Tensor) -> tf.Tensor:
    """One uniform number in [0, 1) a row [batch, 1], for draw ``counters`` [batch] of the
    streams ``keys`` [batch]."""
    z = _mix(keys + tf.cast(tf.cast(counters, tf.int64), tf.uint64) * _u64(_GOLDEN))
    return (tf.cast(tf.bitwise.right_shift(z, _u64(40)), tf.float32) * (2.0**-24))[:, None]


def draw(logits: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """Ids [batch] drawn from logits [batch, vocab] (-inf: never) with one uniform number
    in [0, 1) a row [batch, 1], by the inverse of the running sum of the probabilities."""
    probs = tf.exp(logits - tf.reduce_max(logits, -1, keepdims=True))
    cumulative = tf.math.cumsum(probs, axis=-1)
    point = uniform * cumulative[:, -1:]
    ids = tf.reduce_sum(tf.cast(cumulative <= point, tf.int32), -1)  # the first id whose sum passes the point
    # The point can round up to the total: the last drawable id then.
    last = tf.shape(logits)[-1] - 1 - tf.argmax(tf.reverse(probs > 0, [-1]), -1, output_type=tf.int32)
    return tf.minimum(ids, last)


def choose(log_probs: tf.Tensor, uniform: tf.Tensor, filters: Filters, params: dict) -> tf.Tensor:
    """Each row's next id [batch] by its own settings (``params``: see :func:`settings`)."""
    filtered = filter_logits(
        log_probs,
        params["temperature"],
        params["top_k"] if filters.top_k else 0,
        params["top_p"] if filters.top_p else 1.0,
    )
    ids = draw(filtered, uniform)
    if filters.greedy:
        ids = tf.where(params["greedy"], tf.argmax(mask_unknown(log_probs), -1, output_type=tf.int32), ids)
    return ids


# -- the loop -----------------------------------------------------------------------------------
def sampling_loop(lm, filters: Filters, steps, carry: dict, packed=None) -> tuple[dict, tf.Tensor, tf.Tensor]:
    """The sampling loop, for tracing: ``steps`` steps of every row of a batch of streams.

    ``carry`` holds, per row: ``states`` (the encoder's flat states), ``log_probs``
    [batch, vocab] (the model's prediction for the row's next character), ``position``
    [batch] (characters the row has taken in: prime, then drawn), ``prime`` [batch, P]
    and ``prime_length`` [batch], ``keys`` [batch] (:func:`stream_keys`), and the settings
    of :func:`settings`. A row takes in its prime, one character a step, then draws: its
    draw ``n`` uses the uniform number ``(keys, n)``. Returns the carry after the steps,
    the ids drawn [batch, steps] (-1 where the row was still taking in its prime) and each
    drawn id's log-probability under the untempered model [batch, steps].

    ``packed``: the native step's weights (``SequenceEncoder.pack_step_weights``), or
    None for the cells' own steps.
    """

    def body(t, states, log_probs, position, drawn, scores):
        priming = position < carry["prime_length"]
        index = tf.minimum(position, tf.shape(carry["prime"])[1] - 1)
        from_prime = tf.gather(carry["prime"], index[:, None], batch_dims=1)[:, 0]
        counters = tf.maximum(position - carry["prime_length"], 0)
        chosen = choose(log_probs, uniforms(carry["keys"], counters), filters, carry)
        ids = tf.where(priming, from_prime, chosen)
        score = tf.gather(log_probs, ids[:, None], batch_dims=1)[:, 0]
        drawn = drawn.write(t, tf.where(priming, -1, ids))
        scores = scores.write(t, tf.where(priming, 0.0, score))
        log_probs, states = lm.step_fn(ids, states, packed, t)
        return t + 1, states, log_probs, position + 1, drawn, scores

    start = (
        0,
        carry["states"],
        carry["log_probs"],
        carry["position"],
        tf.TensorArray(tf.int32, size=steps, element_shape=[None]),
        tf.TensorArray(tf.float32, size=steps, element_shape=[None]),
    )
    _, states, log_probs, position, drawn, scores = tf.while_loop(lambda t, *_: t < steps, body, start)
    after = {**carry, "states": states, "log_probs": log_probs, "position": position}
    return after, tf.transpose(drawn.stack()), tf.transpose(scores.stack())


def blank_rows(lm, count: int, width: int) -> dict[str, np.ndarray]:
    """``count`` rows of the loop's carry with nothing in them, as NumPy arrays: zero states
    (``state0``, ``state1``, ...), a prime of one known character in ``width`` columns, no
    random key, plain sampling."""
    rows = {f"state{i}": np.zeros([count, size], np.float32) for i, size in enumerate(lm.encoder.state_size)}
    rows.update(
        log_probs=np.zeros([count, lm.vocab.size], np.float32),
        position=np.zeros([count], np.int32),
        prime=np.ones([count, width], np.int32),
        prime_length=np.ones([count], np.int32),
        keys=np.zeros([count], np.uint64),
        **settings([Sampler()] * count),
    )
    return rows


def to_carry(rows: dict[str, np.ndarray]) -> dict:
    """Rows of :func:`blank_rows`'s layout as the loop's carry (the states as one list)."""
    carry = {name: tf.constant(value) for name, value in rows.items() if not name.startswith("state")}
    carry["states"] = [tf.constant(rows[f"state{i}"]) for i in range(sum(n.startswith("state") for n in rows))]
    return carry


def start_carry(lm, primes: list[np.ndarray], keys, samplers) -> dict:
    """The loop's carry before the first step of streams with these prime ids (a list of
    int arrays), random keys [batch] and samplers."""
    width = max(16, 1 << (max(p.size for p in primes) - 1).bit_length())  # shared programs
    rows = blank_rows(lm, len(primes), width)
    rows["prime"][:] = 0
    for row, ids in enumerate(primes):
        rows["prime"][row, : ids.size] = ids
    rows["prime_length"][:] = [p.size for p in primes]
    rows["keys"][:] = np.asarray(keys)
    rows.update(settings(samplers))
    return to_carry(rows)


def sample(lm, prime_ids: np.ndarray, length: int, sampler: Sampler, seed: int = 0, stream: int = 0) -> str:
    """``length`` characters continuing the prime ids, drawn by ``sampler``: stream
    ``stream`` of ``seed`` (the same text as that stream of a batch; see
    :func:`seqkit.decode.streams.generate`)."""
    from seqkit.decode.streams import generate

    return generate(lm, [prime_ids], length, sampler, seed=seed, first_stream=stream)[0].text
