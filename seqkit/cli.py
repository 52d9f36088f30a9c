"""The `seqkit` command: a thin click shell over the Python API.

Every user mistake arrives here as a :class:`SeqkitError` and leaves as one line on stderr
with exit code 1 (click's own usage errors exit 2); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

import click

from seqkit import __version__
from seqkit.errors import SeqkitError


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up log lines out of the terminal.

    Some are printed before TF_CPP_MIN_LOG_LEVEL is read, so native writes to file
    descriptor 2 go to /dev/null while Python's own stderr keeps the real terminal.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(terminal, "w", buffering=1)
    except OSError:
        pass  # no real stderr descriptor (e.g. captured by a test runner): nothing to hide


# API parameters whose flags are not simply their names with dashes.
FLAGS = {
    "out_dir": "--out",
    "checkpoint_dir": "--out",
    "model_dir": "--model",
    "max_seconds": "--max-time",
    "warmup_steps": "--warmup",
}


def as_flags(message: str, renamed: dict[str, str] | None = None) -> str:
    """An API message with each backquoted parameter name (`top_p`) phrased as its flag."""
    flags = {**FLAGS, **(renamed or {})}
    return re.sub(r"`([a-z_]+)`", lambda m: flags.get(m[1], "--" + m[1].replace("_", "-")), message)


def _rename(**renamed: str) -> None:
    """For this command's errors, API parameters named otherwise than :data:`FLAGS` says."""
    click.get_current_context().find_root().meta["seqkit.flags"] = renamed


class _Seqkit(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SeqkitError as err:
            if ctx.params.get("debug"):
                raise
            click.echo(f"seqkit: error: {as_flags(str(err), ctx.meta.get('seqkit.flags'))}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("seqkit: interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=_Seqkit, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqkit")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own log output.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
def main(verbose: bool, debug: bool) -> None:
    """seqkit: character-level sequence models on TensorFlow 2 / Keras 3."""
    if not verbose:
        _quiet_tensorflow()


def _distribution_options(command):
    """--strategy and --worker-timeout, shared by the training commands."""
    command = click.option(
        "--worker-timeout",
        default=300.0,
        show_default=True,
        type=click.FloatRange(min=1),
        help="Multi-worker: seconds to wait for the other workers.",
    )(command)
    return click.option(
        "--strategy",
        default="auto",
        show_default=True,
        type=click.Choice(["auto", "mirrored", "multi-worker"]),
        help="auto: one device, or all local GPUs; multi-worker: the cluster in TF_CONFIG.",
    )(command)


def _kernel_options(command):
    """--cudnn, --native-kernels, --bf16-gradients and --bf16-recurrence, shared by the training commands."""
    command = click.option(
        "--bf16-recurrence/--no-bf16-recurrence",
        default=None,
        help="The native LSTM loops' step products from bfloat16 values, faster on a CPU with bf16 dot products [off].",
    )(command)
    command = click.option(
        "--bf16-gradients/--no-bf16-gradients",
        default=None,
        help="LSTM weight gradients from bfloat16 matmuls [on for LSTMs on a CPU with bf16 dot products].",
    )(command)
    command = click.option(
        "--native-kernels/--no-native-kernels",
        default=None,
        help="LSTM loops as seqkit's C++ kernels, built on first use [on for LSTMs on a CPU where they build].",
    )(command)
    return click.option(
        "--cudnn/--no-cudnn",
        default=None,
        help="Recurrent layers as NVIDIA cuDNN kernels [on on a GPU, except for peephole or unrolled layers].",
    )(command)


def _choices(flag: str, choices: list[str], help: str, name: str | None = None):
    """An option of a few named values, the first the default."""
    names = [flag, name] if name else [flag]
    return click.option(*names, type=click.Choice(choices), default=choices[0], show_default=True, help=help)


def _model_option(command):
    """--model, optional: the bundled model where it is left out (:func:`_model`)."""
    return click.option(
        "--model",
        "model_dir",
        type=click.Path(file_okay=False),
        help="A train-char --out folder [the bundled model: seqkit models].",
    )(command)


def _model(model_dir: str | None) -> str:
    """The model folder a command uses: ``--model``, else the bundled one, said on stderr."""
    if model_dir is not None:
        return model_dir
    from seqkit.text import bundled

    click.echo(f"Using the bundled model {bundled.DEFAULT} (seqkit models); --model picks your own.", err=True)
    return str(bundled.path())


@main.command("train-char")
@click.argument("corpus", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [runs/CORPUS-NAME].")
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn", "peephole"]), help="Recurrent cell.")
@click.option("--layers", type=click.IntRange(min=1), help="Stacked recurrent layers.")
@click.option("--units", type=click.IntRange(min=1), help="State size of each layer.")
@click.option("--embedding", type=click.IntRange(min=1), help="Character embedding width.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), help="Dropout between layers.")
@click.option("--weight-drop", type=click.FloatRange(0, 1, max_open=True), help="DropConnect on recurrent kernels.")
@click.option("--seq-len", type=click.IntRange(min=1), help="Characters per training window.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per step (global).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--clip", type=click.FloatRange(min=0), help="Global gradient-norm clip (0: off).")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="AdamW weight decay.")
@click.option("--warmup", "warmup_steps", type=click.IntRange(min=0), help="Learning-rate warm-up steps.")
@click.option(
    "--ema",
    type=click.FloatRange(0, 1, max_open=True),
    help="Validate and keep a moving average of the weights (over about the last 10% of steps), "
    "its decay at most this (e.g. 0.999) [0: off].",
)
@_kernel_options
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training text [20; none with --max-time].")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), help="Training seconds allowed.")
@click.option("--eval-every", type=click.IntRange(min=1), help="Steps between evaluations.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), help="Held-out tail.")
@click.option("--val-chars", type=click.IntRange(min=1), help="Held-out characters an evaluation reads at most.")
@click.option("--normalization", type=click.Choice(["NFC", "none"]), help="Unicode normalization.")
@click.option("--encoding", default="utf-8", show_default=True, help="The corpus's text encoding.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory, for a corpus given by name.")
@click.option(
    "--init-from", type=click.Path(file_okay=False), help="Fine-tune: start from this run's weights and vocabulary."
)
@click.option(
    "--extend-vocab", is_flag=True, help="Fine-tuning: give characters the base model never saw rows of their own."
)
@click.option("--include", multiple=True, help="In folders, only files matching this glob (repeatable, e.g. '*.py').")
@click.option("--strict", is_flag=True, help="Refuse a file in a folder that is not text, instead of skipping it.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming from --out.")
@_distribution_options
def train_char(
    corpus,
    out,
    encoding,
    data_dir,
    init_from,
    extend_vocab,
    include,
    strict,
    fresh,
    strategy,
    worker_timeout,
    **options,
) -> None:
    """Train a character language model on text files and folders (each file a document), or
    a corpus of the data registry by name (tinyshakespeare, downloaded and verified on first
    use); resumes when run again."""
    import signal
    from pathlib import Path

    from seqkit.text.train_char import char_config
    from seqkit.text.train_char import train_char as run

    if init_from:  # before anything is read or written: the base's shape wins, in one line
        from seqkit.text.train_char import check_base

        check_base(init_from, options)
    config = char_config(**options)
    out = out or str(Path("runs") / Path(corpus[0]).resolve().stem)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        metrics = run(
            corpus,
            out,
            config,
            fresh=fresh,
            encoding=encoding,
            strategy=strategy,
            worker_timeout=worker_timeout,
            data_dir=data_dir,
            include=include,
            strict=strict,
            init_from=init_from,
            extend_vocab=extend_vocab,
        )
    except KeyboardInterrupt:
        click.echo(f"seqkit: interrupted; the last checkpoint is in {out}; run the same command to resume.", err=True)
        sys.exit(130)
    if not metrics.get("chief", True):
        click.echo(
            f"Worker done: {metrics['steps']} steps in {metrics['train_seconds']:.0f} s; the chief wrote the model."
        )
        return
    val = metrics["val_loss_nats"]
    click.echo(
        f"\nDone: {metrics['steps']} steps in {metrics['train_seconds']:.0f} s, "
        f"{metrics['train_chars_per_sec'] or 0:,.0f} chars/s"
        + (f"; best validation {val:.4f} nats/char ({metrics['val_bits_per_char']:.4f} bits/char)" if val else "")
        + f". Model in {out}."
    )


def _visible(char: str) -> str:
    """A character as the terminal should show it: whitespace and controls escaped."""
    named = {" ": "\u2423", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    if char in named:
        return named[char]
    return char if char.isprintable() else f"\\u{ord(char):04x}"


def _print_tree(nodes, indent: int = 0) -> None:
    for node in nodes:
        click.echo(f"{'  ' * indent}{_visible(node.char)}  p={node.prob:.3f}  path={node.path_prob:.4f}")
        _print_tree(node.children, indent + 1)


@main.command()
@_model_option
@click.option("--prime", "primes", multiple=True, help="Text to continue; repeat it for one stream per prime.")
@click.option("--length", default=200, show_default=True, type=int, help="Characters to generate.")
@click.option("--num-samples", type=int, help="Streams to sample from the prime [1 per prime].")
@click.option("--stop", "stops", multiple=True, help="End a stream at this string (repeatable; \\n understood).")
@click.option("--include-stop", is_flag=True, help="Keep the stop string at the end of each text.")
@click.option("--temperature", default=1.0, show_default=True, type=float, help="Sampling temperature.")
@click.option("--top-k", default=0, show_default=True, type=int, help="Sample among the k likeliest (0: all).")
@click.option("--top-p", default=1.0, show_default=True, type=float, help="Nucleus mass to sample from.")
@click.option("--greedy", is_flag=True, help="Always take the likeliest character.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed: the same seed, the same texts.")
@click.option("--beam", type=int, help="Beam search: print the N best continuations.")
@click.option("--tree", is_flag=True, help="Show the prediction tree of likely next characters.")
@click.option("--width", default=5, show_default=True, type=int, help="Tree: children per node.")
@click.option("--depth", default=3, show_default=True, type=int, help="Tree: levels.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Tree: also draw it (.png or .svg).")
@click.option("--drop-unknown", is_flag=True, help="Drop prime characters the model never saw.")
@click.option(
    "--half-weights/--float32-weights",
    default=None,
    help="Sampling: the native step's weights as float16, which halves what each character reads "
    "[float16 where the CPU gains from it].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def generate(
    model_dir,
    primes,
    length,
    num_samples,
    stops,
    include_stop,
    temperature,
    top_k,
    top_p,
    greedy,
    seed,
    beam,
    tree,
    width,
    depth,
    plot_path,
    drop_unknown,
    half_weights,
    as_json,
) -> None:
    """Continue a prime by sampling (many streams at once with --num-samples or several
    --prime), by --beam search, or show the --tree of predictions."""
    import json

    from seqkit.decode import CharLM, Sampler, beam_search, prediction_tree
    from seqkit.decode import generate as sample_streams
    from seqkit.decode.streams import unescape

    sampler = Sampler(temperature, top_k, top_p, greedy)
    if beam is not None and beam < 1:
        raise SeqkitError("--beam must be at least 1.")
    primes = list(primes) or [""]
    if (tree or beam is not None) and (len(primes) > 1 or num_samples is not None):
        raise click.UsageError("--tree and --beam take one --prime and no --num-samples.")
    stops = [unescape(stop) for stop in stops]
    lm = CharLM.load(_model(model_dir))
    lm.half_weights = half_weights
    if half_weights is not None and (tree or beam is not None):
        click.echo(
            "note: --half-weights and --float32-weights apply to sampling only; the tree and beam search use float32.",
            err=True,
        )
    ids = [lm.encode_prime(prime, drop_unknown) for prime in primes]
    prime = primes[0]
    if tree:
        usable = lm.vocab.size - 1
        if width > usable:
            click.echo(
                f"note: --width {width} is more than the {usable} characters the model knows; using {usable}.", err=True
            )
        nodes = prediction_tree(lm, ids[0], min(width, usable), depth, stop=stops)
        if plot_path:
            from seqkit.plots import plot_tree

            plot_tree(nodes, plot_path, prime, lambda n: f"{_visible(n.char)}  {n.prob:.2f}  {n.path_prob:.3f}")
        if as_json:
            click.echo(json.dumps({"prime": prime, "tree": [n.to_dict() for n in nodes]}, ensure_ascii=False, indent=1))
        else:
            click.echo(f"after {prime!r}:")
            _print_tree(nodes, 1)
        return
    if beam is not None:
        _rename(width="--beam")
        beams = beam_search(lm, ids[0], beam, length, stop=stops, include_stop=include_stop)
        if as_json:
            rows = [{"text": b.text, "log_prob": b.log_prob, "log_prob_per_char": b.per_char} for b in beams]
            click.echo(json.dumps({"prime": prime, "beams": rows}, ensure_ascii=False, indent=1))
        else:
            for b in beams:
                click.echo(f"{b.log_prob:9.3f}  {b.per_char:7.4f}/char  {prime}{b.text}")
        return
    streaming = not as_json and len(primes) == 1 and (num_samples or 1) == 1 and sys.stdout.isatty()
    if streaming:  # the characters as they are made
        click.echo(prime, nl=False)
    on_text = (lambda row, text: click.echo(text, nl=False)) if streaming else None
    samples = sample_streams(
        lm,
        ids,
        length,
        sampler,
        seed=seed,
        stop=stops,
        include_stop=include_stop,
        on_text=on_text,
        num_samples=num_samples if num_samples is not None or len(primes) == 1 else None,
    )
    texts = [(primes[0] if len(primes) == 1 else primes[i]) for i in range(len(samples))]
    if as_json:
        rows = [{"prime": p, **s.to_dict()} for p, s in zip(texts, samples)]
        if len(rows) == 1:
            click.echo(json.dumps({**rows[0], "seed": seed}, ensure_ascii=False))
        else:
            click.echo(json.dumps({"seed": seed, "samples": rows}, ensure_ascii=False, indent=1))
    elif streaming:
        click.echo()
    elif len(samples) == 1:
        click.echo(texts[0] + samples[0].text)
    else:
        _print_samples([p + s.text for p, s in zip(texts, samples)])


def _print_samples(texts: list[str]) -> None:
    """Several texts: one a line where every one is a single line, else in numbered blocks."""
    if not any("\n" in text for text in texts):
        for text in texts:
            click.echo(text)
        return
    for number, text in enumerate(texts, 1):
        click.echo(f"{'' if number == 1 else chr(10)}--- sample {number} of {len(texts)} ---")
        click.echo(text)


@main.command()
@_model_option
@click.argument("text", required=False)
@click.option("--file", "path", type=click.Path(dir_okay=False), help="Score this file instead.")
@click.option("--per-char", is_flag=True, help="Also show each character's surprisal.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def score(model_dir, text, path, per_char, as_json) -> None:
    """How likely the model finds a text: log-probability, bits per char, perplexity."""
    import json
    from pathlib import Path

    from seqkit.decode import CharLM
    from seqkit.decode import score as score_text

    if (text is None) == (path is None):
        raise click.UsageError("Give a TEXT or --file PATH (one of them).")
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise SeqkitError(f"Cannot read {path} as UTF-8 text ({err}).") from None
    result = score_text(CharLM.load(_model(model_dir)), text)
    if not per_char:
        result.pop("surprisal_bits")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=1))
        return
    click.echo(
        f"{result['characters_scored']} characters: log-probability {result['log_prob_nats']:.3f} nats, "
        f"{result['nats_per_char']:.4f} nats/char, {result['bits_per_char']:.4f} bits/char, "
        f"perplexity {result['perplexity']:.3f}"
    )
    for row in result.get("surprisal_bits", []):
        click.echo(f"  {_visible(row['char'])}  {row['bits']:.3f} bits")


@main.command()
@_model_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="A new folder for the exported model.")
@_choices(
    "--format",
    ["savedmodel", "litert", "onnx"],
    "savedmodel: for servers; litert (.tflite) and onnx: one step, the state kept by the app.",
    name="kind",
)
@_choices("--quantize", ["none", "float16", "dynamic-int8"], "LiteRT: weights as float16, or int8 (dynamic range).")
@click.option(
    "--eval-text",
    type=click.Path(dir_okay=False),
    help="LiteRT, ONNX: measure the prediction change on this text [the run's held-out text].",
)
def export(model_dir, out, kind, quantize, eval_text) -> None:
    """Export a model: a TensorFlow SavedModel that serves it without seqkit, or a step
    model for phones and small devices (LiteRT, ONNX)."""
    if kind == "savedmodel":
        if quantize != "none" or eval_text is not None:
            raise SeqkitError(
                "--quantize and --eval-text are for --format litert and onnx: a SavedModel keeps float32."
            )
        from seqkit.decode.export import export as run

        path = run(_model(model_dir), out)
        click.echo(f"SavedModel in {path}: signatures serving_default (next-character probabilities) and sample.")
        return
    from seqkit.decode.edge import export_step

    described = export_step(_model(model_dir), out, kind, quantize, eval_text)
    click.echo(
        f"{kind} step model in {out}/{described['file']} ({described['size_bytes'] / 1e6:.2f} MB, quantize "
        f"{quantize}): (char_id, state) -> (probabilities, new_state); model.json describes them."
    )
    change = described.get("prediction_change")
    if change is not None:
        click.echo(
            f"Against float32 on {change['characters']:,} characters of {change['text']}: KL "
            f"{change['kl_nats_per_char']:.2e} nats/char; {change['bits_per_char']:.4f} bits/char "
            f"(float32: {change['bits_per_char_float32']:.4f})."
        )


@main.command()
@_model_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--name", help="The model's name in /v1/models/NAME [the run folder's name].")
@click.option("--cors", help="Let pages of this origin call the API (e.g. https://example.org) [off].")
@click.option("--max-concurrent", default=128, show_default=True, type=click.IntRange(min=1), help="Requests at once.")
@click.option("--max-length", default=2000, show_default=True, type=click.IntRange(min=1), help="Characters a stream.")
@click.option("--max-samples", default=64, show_default=True, type=click.IntRange(min=1), help="Streams a request.")
@click.option("--max-prime", default=1024, show_default=True, type=click.IntRange(min=1), help="Characters a prime.")
@click.option("--max-tree", default=2000, show_default=True, type=click.IntRange(min=1), help="Nodes a tree.")
@click.option("--max-body", default=1 << 20, show_default=True, type=click.IntRange(min=64), help="Bytes a request.")
def serve(model_dir, host, port, name, cors, max_concurrent, max_length, max_samples, max_prime, max_tree, max_body):
    """Serve a model over HTTP: TensorFlow Serving's REST API, seqkit's own, and a page at /."""
    from seqkit.serve.app import Limits
    from seqkit.serve.server import prepare, run

    limits = Limits(max_body, max_prime, max_length, max_samples, max_tree, max_concurrent)
    app, name = prepare(_model(model_dir), name, limits, cors)
    run(app, name, host, port)


@main.command()
def models() -> None:
    """List the models that ship with seqkit (what --model is when left out)."""
    from seqkit.text import bundled

    for model in bundled.models():
        card = model.card
        click.echo(f"{model.name}{' (default)' if model.name == bundled.DEFAULT else ''}: {model.describe()}")
        click.echo(f"  folder:  {model.path}")
        click.echo(f"  made by: {card['command']}")
        click.echo(f"  data:    {card['data']}")


@main.group()
def bench() -> None:
    """Regression benchmarks of the sequence core."""


@bench.command("mnist")
@click.option("--quick", is_flag=True, help="CI / first-run profile: one epoch on a subset.")
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn", "peephole"]), help="Recurrent cell.")
@click.option("--layers", type=click.IntRange(min=1), help="Stacked recurrent layers.")
@click.option("--units", type=click.IntRange(min=1), help="State size of each layer.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), help="Dropout between layers.")
@click.option("--bidirectional/--unidirectional", default=None, help="Read rows both ways.")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training images.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Global batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--clip", type=click.FloatRange(min=0), help="Global gradient-norm clip (0: off).")
@_kernel_options
@click.option("--train-subset", type=click.IntRange(min=1), help="Train on the first N images.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures as JSON.")
@click.option("--baseline", type=click.Path(dir_okay=False), help="Baseline JSON to compare with.")
@click.option("--no-baseline", is_flag=True, help="Do not compare with the shipped baseline.")
@click.option("--accuracy-tolerance", type=click.FloatRange(min=0), help="Allowed accuracy drop.")
@click.option(
    "--speed-tolerance",
    type=click.FloatRange(0, 1),
    help="Fail when machine-adjusted speed drops by more than this share [off: speed is reported].",
)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write curves as PNG.")
@_distribution_options
def bench_mnist(
    quick, json_path, baseline, no_baseline, plot_path, data_dir, strategy, worker_timeout, **options
) -> None:
    """Train and evaluate the row-sequence MNIST classifier; compare with a baseline.

    By default the run compares with the baseline shipped for its profile and code path
    (which kernels run the recurrent layers); exits 1, naming the figure, when test
    accuracy or machine-adjusted speed regresses beyond its tolerance.
    """
    from seqkit.fileio import read_json, write_json
    from seqkit.mnist import bench as mnist_bench

    profile = "quick" if quick else "default"
    config = mnist_bench.profile_config(profile, **options)
    if baseline:  # its settings before anything else; its code path once the kernels are chosen
        mnist_bench.check_baseline(read_json(baseline, "baseline"), config)
    chosen: list = []

    def choose(path: dict) -> None:
        if no_baseline:
            click.echo("No baseline compared (--no-baseline).", err=True)
            return
        found, line = mnist_bench.choose_baseline(config, path, baseline)
        click.echo(line, err=True)
        chosen.append(found)

    result = mnist_bench.run(
        config, data_dir=data_dir, strategy=strategy, worker_timeout=worker_timeout, on_start=choose
    )
    if not result["chief"]:
        click.echo(f"Worker done: test accuracy {result['test_accuracy']:.4f}; the chief reports and writes.")
        return
    base = chosen[0] if chosen else None
    cmp = mnist_bench.compare(result, base, config) if base is not None else None
    click.echo("\nResults" + (f" (baseline {base.path})" if cmp else ""))
    click.echo(mnist_bench.format_table(result, cmp))
    if json_path:
        if cmp is not None:
            result["comparison"] = {"baseline": str(base.path), **vars(cmp)}
        write_json(json_path, result)
    if plot_path:
        mnist_bench.plot(result, plot_path)
    if cmp is not None and cmp.failures:
        for failure in cmp.failures:
            click.echo(f"REGRESSION: {failure}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
