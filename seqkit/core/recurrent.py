"""The sequence core: a stacked, optionally bidirectional recurrent encoder as one Keras layer.

Padding never changes a result: a padded step leaves every state as it was, so the final
state of each sequence is its state at its own last real step, and the output at a padded
step is zero. Sequences are right-padded; give either a Keras mask or explicit ``lengths``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from seqkit.core import cudnn, dispatch, native
from seqkit.core.cells import CELLS, Cell, LSTMCell, make_cell
from seqkit.core.fused import run_lstm
from seqkit.errors import SeqkitError

INFERENCE_UNROLL_STEPS = 128  # inference unrolls sequences up to this length (see `run`)


def _run_layer(
    cell: Cell,
    x: tf.Tensor,
    states: tuple[tf.Tensor, ...],
    mask: tf.Tensor | None,
    return_sequences: bool,
    unroll: bool,
    fused: bool,
    recurrent_kernel: tf.Tensor | None = None,
    training: bool = True,
) -> tuple[tf.Tensor | None, tuple[tf.Tensor, ...]]:
    """Run ``cell`` over time on inputs ``x`` [batch, time, features], with
    ``recurrent_kernel`` in place of the cell's own when given.

    Returns the outputs [batch, time, units] (or None) and the final states.
    """
    mask_tm = None if mask is None else tf.transpose(mask)[:, :, None]
    if fused and type(cell) is LSTMCell and not unroll:
        x_tm = tf.transpose(x, [1, 0, 2])
        weights = tf.ones_like(x_tm[:, :, :1]) if mask_tm is None else tf.cast(mask_tm, x.dtype)
        recurrent = cell.recurrent_kernel if recurrent_kernel is None else recurrent_kernel
        outputs, h, c = run_lstm(x_tm, cell.kernel, cell.bias, recurrent, *states, weights, training=training)
        return (tf.transpose(outputs, [1, 0, 2]) if return_sequences else None), (h, c)
    if dispatch.current().split:
        # Its loop would run uncompiled: autodiff cannot cross into a separate XLA program.
        raise SeqkitError(
            f"Native kernels and bf16 weight gradients are for the fused LSTM, which a {type(cell).__name__} "
            "(or an unfused or unrolled LSTM) does not run: train it without them."
        )
    xp = cell.project(x)
    xp_tm = tf.transpose(xp, [1, 0, 2])

    def advance(t, states):
        new = cell.step(xp_tm[t], states, recurrent_kernel)
        if mask_tm is None:
            return new[0], new
        keep = mask_tm[t]
        new = tuple(tf.where(keep, n, o) for n, o in zip(new, states))
        return tf.where(keep, new[0], tf.zeros_like(new[0])), new

    steps = xp.shape[1]
    if unroll and steps is not None:
        outputs = []
        for t in range(steps):
            h, states = advance(t, states)
            outputs.append(h)
        return (tf.stack(outputs, axis=1) if return_sequences else None), states

    steps = tf.shape(xp_tm)[0] if steps is None else steps
    loop_vars = (0, states)
    if return_sequences:
        loop_vars += (tf.TensorArray(xp.dtype, size=steps),)

    def body(t, states, *outputs):
        h, states = advance(t, states)
        return (t + 1, states) + tuple(o.write(t, h) for o in outputs)

    _, states, *outputs = tf.while_loop(lambda t, *_: t < steps, body, loop_vars, maximum_iterations=steps)
    if not outputs:
        return None, states
    return tf.transpose(outputs[0].stack(), [1, 0, 2]), states


@keras.saving.register_keras_serializable(package="seqkit")
class SequenceEncoder(keras.layers.Layer):
    """Stacked recurrent encoder with dynamic lengths, carried state and dropout between layers.

    Call it on ``inputs`` [batch, time, features]; optional ``mask`` [batch, time] (from an
    upstream Keras layer or given) or ``lengths`` [batch]; optional ``initial_state``, a flat
    list in the order of :attr:`state_size`. Returns the outputs ([batch, time, width] with
    ``return_sequences``, else each sequence's last real output [batch, width]), followed by
    the flat list of final states when ``return_state`` is set, as Keras's own RNNs do.
    ``width`` is ``units``, or ``2 * units`` when bidirectional.

    Args:
        units: size of each layer's state.
        cell: ``lstm``, ``gru``, ``rnn`` (tanh) or ``peephole`` (LSTM with peepholes).
        layers: number of stacked layers (>= 1).
        dropout: rate applied to the outputs of every layer (so between layers and on the
            final output) while training; inactive at inference.
        weight_drop: DropConnect rate on the recurrent kernels while training (one mask per
            batch and layer, as AWD-LSTM's WeightDrop): it regularizes the recurrence itself,
            which output dropout leaves alone; inactive at inference.
        bidirectional: also run each layer backwards over each sequence's real steps and
            concatenate both directions' outputs (for classifiers, not for decoding).
        return_sequences: return the outputs of every step rather than the last real one.
        return_state: also return the final states, for step-by-step decoding.
        unroll: unroll the time loop in the graph in training too (only for a statically
            known, short length; inference unrolls up to ``INFERENCE_UNROLL_STEPS`` anyway).
        fused: for ``lstm``, use the recurrence with a hand-written backward pass
            (:mod:`seqkit.core.fused`); same numbers, faster training.
        seed: seed of the dropout masks.
    """

    def __init__(
        self,
        units: int,
        cell: str = "lstm",
        layers: int = 1,
        dropout: float = 0.0,
        weight_drop: float = 0.0,
        bidirectional: bool = False,
        return_sequences: bool = False,
        return_state: bool = False,
        unroll: bool = False,
        fused: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise SeqkitError(f"Unknown cell {cell!r}: choose one of {', '.join(CELLS)}.")
        if int(layers) < 1 or int(units) < 1:
            raise SeqkitError("`layers` and `units` must be at least 1.")
        for name, rate in (("Dropout", dropout), ("Weight drop", weight_drop)):
            if not 0.0 <= float(rate) < 1.0:
                raise SeqkitError(f"{name} must be in [0, 1), got {rate}.")
        self.units, self.cell, self.layers = int(units), cell, int(layers)
        self.dropout, self.weight_drop = float(dropout), float(weight_drop)
        self.bidirectional, self.seed = bool(bidirectional), seed
        self.unroll, self.fused = bool(unroll), bool(fused)
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.directions = 2 if self.bidirectional else 1
        self.cells = [
            make_cell(cell, self.units, name=f"layer{i}_{'backward' if d else 'forward'}")
            for i in range(self.layers)
            for d in range(self.directions)
        ]
        self.seed_generator = keras.random.SeedGenerator(seed) if self.dropout or self.weight_drop else None
        self.supports_masking = True

    @property
    def trains_fused(self) -> bool:
        """Whether training runs the fused LSTM scan (the only path with native kernels and bf16 weight gradients)."""
        return self.fused and not self.unroll and self.cell == "lstm"

    @property
    def runs_cudnn(self) -> bool:
        """Whether, traced with ``dispatch.kernels(cudnn=True)``, the layers run as cuDNN kernels."""
        return cudnn.supports(type(self.cells[0]), self.compute_dtype) and not self.unroll

    @property
    def state_size(self) -> list[int]:
        """Sizes of the flat state list: per layer, per direction, the cell's state tensors."""
        return [self.units] * sum(c.state_count for c in self.cells)

    def build(self, input_shape) -> None:
        width = input_shape[-1]
        for i in range(self.layers):
            for cell in self.cells[i * self.directions : (i + 1) * self.directions]:
                cell.build((None, None, width))
            width = self.units * self.directions

    def get_initial_state(self, batch_size) -> list[tf.Tensor]:
        return [s for c in self.cells for s in c.zero_state(batch_size, self.compute_dtype)]

    def call(
        self,
        inputs,
        mask=None,
        lengths=None,
        initial_state: Sequence[tf.Tensor] | None = None,
        training=None,
    ):
        x, final_states = self.run(inputs, mask, lengths, initial_state, training)
        return [x, *final_states] if self.return_state else x

    def run(
        self,
        inputs,
        mask=None,
        lengths=None,
        initial_state: Sequence[tf.Tensor] | None = None,
        training=None,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Like :meth:`call`, but always returns ``(outputs, final_states)``."""
        x = tf.convert_to_tensor(inputs)
        steps = tf.shape(x)[1]
        if lengths is not None:
            lengths = tf.cast(lengths, tf.int32)
            mask = tf.sequence_mask(lengths, steps)
        elif mask is not None:
            mask = tf.cast(mask, tf.bool)
            lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        if initial_state is None:
            states = self.get_initial_state(tf.shape(x)[0])
        else:
            states = list(initial_state)
            if len(states) != len(self.state_size):
                raise SeqkitError(f"initial_state needs {len(self.state_size)} tensors, got {len(states)}.")
        # On a GPU with cuDNN dispatched, each layer is one cuDNN call. Otherwise, in
        # training, the fused LSTM keeps what its backward pass needs. Inference keeps
        # nothing: with native kernels it runs their forward loop, else, on short sequences
        # of known length, it unrolls the loop: XLA on CPU pays a fixed cost per loop
        # iteration (1.3x to 1.6x faster at 28 to 100 steps).
        gpu = dispatch.cudnn_active() and self.runs_cudnn
        native = not training and dispatch.current().native
        fused = self.fused and (bool(training) or native)
        short = x.shape[1] is not None and x.shape[1] <= INFERENCE_UNROLL_STEPS
        unroll = self.unroll or (not training and not native and short)
        final_states: list[tf.Tensor] = []
        for i in range(self.layers):
            last = i == self.layers - 1
            sequences = self.return_sequences or not last
            outs = []
            for d in range(self.directions):
                cell = self.cells[i * self.directions + d]
                start = tuple(states[: cell.state_count])
                states = states[cell.state_count :]
                seq_in = x if d == 0 else self._reverse(x, lengths)
                recurrent = None
                if training and self.weight_drop:
                    recurrent = self._dropout(cell.recurrent_kernel, self.weight_drop)
                if gpu:
                    out, end = cudnn.run_layer(cell, seq_in, start, mask, sequences, recurrent, bool(training))
                else:
                    out, end = _run_layer(
                        cell, seq_in, start, mask, sequences, unroll, fused, recurrent, bool(training)
                    )
                if d == 1 and out is not None:
                    out = self._reverse(out, lengths)
                outs.append(out if out is not None else end[0])
                final_states.extend(end)
            x = outs[0] if self.directions == 1 else tf.concat(outs, axis=-1)
            if training and self.dropout:
                x = self._dropout(x, self.dropout)
        return x, final_states

    def step(
        self, x: tf.Tensor, states: Sequence[tf.Tensor], packed: Sequence | None = None, index=0
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One time step at inference, for decoding: ``x`` [batch, features] and the flat
        states in, the last layer's output [batch, units] and the new states out.

        Equals :meth:`call` on a length-1 sequence with ``initial_state``, without the time
        loop around it. ``packed``, from :meth:`pack_step_weights`, runs each layer as
        seqkit's native step instead (inside an XLA program on a CPU), passed the decoding
        loop's step count ``index`` (see ``native.lstm_step``).
        """
        if self.bidirectional:
            raise SeqkitError("A bidirectional encoder reads whole sequences; it cannot step.")
        states, new_states = list(states), []
        for layer, cell in enumerate(self.cells):
            cell_states = tuple(states[: cell.state_count])
            states = states[cell.state_count :]
            if packed is None:
                cell_states = cell.step(cell.project(x), cell_states)
            else:
                cell_states = native.lstm_step(x, cell_states, packed[layer], index)
            new_states.extend(cell_states)
            x = cell_states[0]
        return x, new_states

    def steps_natively(self) -> bool:
        """Whether :meth:`step` can run as seqkit's native step here: every layer a plain
        float32 LSTM as wide as a multiple of 16, no GPU in sight, and the op builds."""
        return dispatch.steps_natively(self)

    def pack_step_weights(self, dtype: tf.DType = tf.float32) -> list:
        """Each layer's weights for :meth:`step`'s native path, made before a decoding loop
        (``dtype``: see ``native.pack_step_weights``)."""
        return [native.pack_step_weights(cell, dtype) for cell in self.cells]

    def _dropout(self, x: tf.Tensor, rate: float) -> tf.Tensor:
        """Inverted dropout with an explicit RNG algorithm: under XLA on CPU the default
        ("auto_select", which Keras's Dropout uses) made a training step 2.8x slower."""
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        context = tf.distribute.get_replica_context()  # each replica its own masks
        if context is not None:
            seed += tf.stack([0, tf.cast(context.replica_id_in_sync_group, tf.int64)])
        keep = tf.random.stateless_uniform(tf.shape(x), seed=seed, alg="philox") >= rate
        return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))

    @staticmethod
    def _reverse(x: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
        """Reverse each sequence's real steps, leaving its padding at the end."""
        if lengths is None:
            return tf.reverse(x, axis=[1])
        return tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)

    def compute_mask(self, inputs, mask=None):
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None] * len(self.state_size)
        return out_mask

    def compute_output_shape(self, input_shape, *args, **kwargs):
        width = self.units * self.directions
        batch = input_shape[0]
        out = (batch, input_shape[1], width) if self.return_sequences else (batch, width)
        if self.return_state:
            return [out] + [(batch, self.units)] * len(self.state_size)
        return out

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "cell": self.cell,
            "layers": self.layers,
            "dropout": self.dropout,
            "weight_drop": self.weight_drop,
            "bidirectional": self.bidirectional,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "unroll": self.unroll,
            "fused": self.fused,
            "seed": self.seed,
        }
