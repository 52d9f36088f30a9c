"""Step models for phones and small devices: LiteRT (``.tflite``) and ONNX.

What is exported is one step of the model, not a loop over a sequence: ``(char_id [1]
int32, state [1, S] float32) -> (probabilities [1, V] float32, state [1, S] float32)``.
The app keeps the state (zeros to start), feeds the prime one character at a time, then
its own choices; the graph has no ``WHILE`` op, which LiteRT Micro handles badly for
LSTMs. ``S`` is every layer's state side by side (an LSTM layer's h then c; a GRU's or
tanh RNN's h), ``V`` the vocabulary with the unknown id 0 first.

The output folder holds the model, ``vocab.json`` (id = 1 + the character's index in
``chars``; 0 for a character the model never saw) and ``model.json``, which describes the
inputs, outputs and state layout, the quantization, and, where it was measured, how much
quantization changed the predictions (mean KL divergence per character from the float32
model, and both models' bits per character, on ``eval_text`` or the run's held-out text).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqkit.decode.lm import CharLM
from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_dir
from seqkit.text.corpus import saved_corpus

QUANTIZATIONS = {"litert": ("none", "float16", "dynamic-int8"), "onnx": ("none",), "savedmodel": ("none",)}
EVAL_CHARS = 5000  # characters the prediction change is measured over


class StepModule(tf.Module):
    """One step of a character model as a TensorFlow function with one flat state."""

    def __init__(self, lm: CharLM):
        super().__init__()
        self.lm, self.model = lm, lm.model  # the model tracked, so its weights are saved
        self.sizes = [int(s.shape[-1]) for s in lm.encoder.get_initial_state(1)]
        self.state_size = sum(self.sizes)
        signature = [
            tf.TensorSpec([1], tf.int32, name="char_id"),
            tf.TensorSpec([1, self.state_size], tf.float32, name="state"),
        ]
        self.step = tf.function(self._step, input_signature=signature, autograph=False)

    def _step(self, char_id, state):
        states = tf.split(state, self.sizes, axis=1)
        out, states = self.lm.encoder.step(self.lm.embedding(char_id), states)  # the cells' own ops
        return {"probabilities": tf.nn.softmax(self.lm.logits_layer(out)), "new_state": tf.concat(states, axis=1)}

    def layout(self) -> list[dict]:
        """Which columns of the state belong to which layer and part (h, and an LSTM's c)."""
        parts, start = [], 0
        for layer, cell in enumerate(self.lm.encoder.cells):
            for name in ("h", "c")[: cell.state_count]:
                size = self.sizes[len(parts)]
                parts.append({"layer": layer, "part": name, "start": start, "size": size})
                start += size
        return parts


def frozen_step(module: StepModule):
    """The step as a concrete function with the weights as constants, outputs by name.

    Converters left alone keep Keras 3's weights as resource variables, which a LiteRT
    interpreter does not initialize from the file (the step then returns NaN)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = module.step.get_concrete_function()
    constant = convert_variables_to_constants_v2(function)

    def step(char_id, state):
        outputs = tf.nest.pack_sequence_as(function.structured_outputs, constant(char_id, state))
        return {name: tf.identity(value, name=name) for name, value in outputs.items()}

    return tf.function(step, input_signature=function.structured_input_signature[0]).get_concrete_function()


def _litert(module: StepModule, quantize: str) -> bytes:
    """The step converted to LiteRT: one signature, ``serving_default``."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_step(module)], module)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def _interpreter(content: bytes, delegates: bool = True):
    """A LiteRT interpreter of ``content``: the ``ai-edge-litert`` package's, else
    TensorFlow's; without the default (XNNPACK) delegate, its operators are the model's own."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType  # noqa: N806
    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=content, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def op_names(content: bytes) -> list[str]:
    """The distinct operators of a ``.tflite`` model."""
    return sorted({op["op_name"] for op in _interpreter(content, delegates=False)._get_ops_details()})


class _LiteStep:
    """One step through a LiteRT interpreter, by the signature's names."""

    def __init__(self, content: bytes):
        self.runner = _interpreter(content).get_signature_runner("serving_default")

    def __call__(self, char_id: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.runner(char_id=np.array([char_id], np.int32), state=state)
        return out["probabilities"], out["new_state"]


@dataclass
class Change:
    """How much a converted model's predictions differ from the float32 model's."""

    characters: int
    kl_nats_per_char: float
    bits_per_char_float32: float
    bits_per_char: float


def compare(module: StepModule, step, ids: np.ndarray) -> Change:
    """Run ``ids`` through the float32 step and through ``step``; mean KL and bits per char
    of the next character."""
    state32 = np.zeros([1, module.state_size], np.float32)
    state = state32.copy()
    kl, bits32, bits = 0.0, 0.0, 0.0
    for current, following in zip(ids[:-1], ids[1:]):
        out = module.step(tf.constant([current], tf.int32), tf.constant(state32))
        p, state32 = out["probabilities"].numpy()[0], out["new_state"].numpy()
        q, state = step(int(current), state)
        q = np.maximum(q[0].astype(np.float64), 1e-12)
        p = np.maximum(p.astype(np.float64), 1e-12)
        kl += float(np.sum(p * (np.log(p) - np.log(q))))
        bits32 -= math.log2(p[following])
        bits -= math.log2(q[following])
    n = max(1, len(ids) - 1)
    return Change(len(ids) - 1, max(0.0, kl / n), bits32 / n, bits / n)  # not below 0 by rounding


def held_out_ids(model_dir: Path, lm: CharLM, eval_text: str | Path | None) -> np.ndarray | None:
    """The ids the prediction change is measured on: ``eval_text``, else the run's encoded
    held-out text where the folder keeps it (``corpus.npy``); None when neither is there."""
    if eval_text is not None:
        try:
            text = Path(eval_text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise SeqkitError(f"Cannot read `eval_text` {eval_text} as UTF-8 text ({err}).") from None
        ids = lm.vocab.encode(text)[: EVAL_CHARS + 1]
        if len(ids) < 2:
            raise SeqkitError(f"`eval_text` {eval_text} is shorter than two characters.")
        return ids
    corpus = saved_corpus(model_dir)
    if corpus is None or corpus.vocab.chars != lm.vocab.chars:
        return None
    return np.asarray(corpus.val_ids[: EVAL_CHARS + 1], np.int32)


def export_step(
    model_dir: str | Path,
    out_dir: str | Path,
    format: str = "litert",
    quantize: str = "none",
    eval_text: str | Path | None = None,
) -> dict:
    """Write the step model of a trained model in ``format``; return its ``model.json``."""
    if format not in ("litert", "onnx"):
        raise SeqkitError(f"Unknown `format` {format!r}: use savedmodel, litert or onnx.")
    if quantize not in QUANTIZATIONS[format]:
        raise SeqkitError(
            f"`quantize` {quantize} is not for the {format} format: use {' or '.join(QUANTIZATIONS[format])}."
        )
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise SeqkitError(f"{out} exists and is not empty: choose a new `out_dir`.")
    lm = CharLM.load(model_dir)
    if lm.encoder.bidirectional:
        raise SeqkitError(
            "A bidirectional model reads each sequence from both ends, so it has no step to export: "
            "export a unidirectional one."
        )
    module = StepModule(lm)
    ids = held_out_ids(Path(model_dir), lm, eval_text)
    if format == "litert":
        content, name = _litert(module, quantize), "model.tflite"
        loops = [op for op in op_names(content) if "WHILE" in op]
        if loops:
            raise SeqkitError(f"The converted step has loop operators ({', '.join(loops)}): report this.")
        step = _LiteStep(content)
    else:
        content, name = _onnx(module), "model.onnx"
        step = _OnnxStep(content)
    described = describe(module, format, name, quantize) | {"size_bytes": len(content)}
    if ids is not None:
        change = compare(module, step, ids)
        described["prediction_change"] = {
            "text": str(eval_text) if eval_text is not None else "the run's held-out text",
            **change.__dict__,
        }
    with atomic_dir(out) as tmp:
        (tmp / name).write_bytes(content)
        lm.vocab.save(tmp / "vocab.json")
        (tmp / "model.json").write_text(json.dumps(described, indent=2, ensure_ascii=False) + "\n")
    return described


def describe(module: StepModule, format: str, name: str, quantize: str) -> dict:
    """``model.json``: what an app needs to run the step."""
    vocab = module.lm.vocab
    return {
        "format": format,
        "file": name,
        "quantize": quantize,
        **({"signature": "serving_default"} if format == "litert" else {}),
        "inputs": {
            "char_id": {"shape": [1], "dtype": "int32", "meaning": "the id of the current character (vocab.json)"},
            "state": {"shape": [1, module.state_size], "dtype": "float32", "meaning": "zeros at the start"},
        },
        "outputs": {
            "probabilities": {"shape": [1, vocab.size], "dtype": "float32", "meaning": "of the next character's id"},
            "new_state": {"shape": [1, module.state_size], "dtype": "float32", "meaning": "the next step's state"},
        },
        "state_layout": module.layout(),
        "vocabulary": {"file": "vocab.json", "size": vocab.size, "unknown_id": 0, "normalization": vocab.normalization},
        "cell": module.lm.encoder.cell,
    }


def _onnx(module: StepModule) -> bytes:
    """The step converted to ONNX by tf2onnx (opset 17)."""
    try:
        import tf2onnx
    except ImportError:
        raise SeqkitError("ONNX export needs tf2onnx: pip install 'seqkit[edge]'.") from None
    proto, _ = tf2onnx.convert.from_function(module.step, input_signature=module.step.input_signature, opset=17)
    return proto.SerializeToString()


class _OnnxStep:
    """One step through ONNX Runtime, by the graph's names."""

    def __init__(self, content: bytes):
        try:
            import onnxruntime
        except ImportError:
            raise SeqkitError("Checking the ONNX model needs onnxruntime: pip install 'seqkit[edge]'.") from None
        self.session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, char_id: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = dict(zip(self.names, self.session.run(None, {"char_id": np.array([char_id], np.int32), "state": state})))
        return out["probabilities"], out["new_state"]
