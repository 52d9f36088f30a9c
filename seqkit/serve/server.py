"""Running the server: load the model once, warm its compiled functions up, then listen.

The model's compiled programs (the sampling loop at the batch sizes it will meet, the
predict signature, the tree's and the score's functions) are made before the server says
it is ready, so that no first client waits for a compiler; on a new machine that includes
building the native decoding step, once.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from seqkit.serve.app import Limits

WARM_ROWS = (1, 2, 4, 8, 16, 32, 64)  # batch sizes compiled before the server is ready


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(model_dir: str | Path, name: str | None = None, limits: Limits | None = None, cors: str | None = None):
    """The application of a run folder, warmed up: (app, name)."""
    import tensorflow as tf

    from seqkit.decode import CharLM, prediction_tree, score
    from seqkit.decode.export import ServingModule
    from seqkit.serve.app import create_app
    from seqkit.serve.engine import Engine

    limits = limits or Limits()
    lm = CharLM.load(model_dir)
    name = name or Path(model_dir).resolve().name
    _say(f"Loaded {model_dir}; compiling the sampling loop and the model's other functions ...")
    engine = Engine(lm, max_rows=max(limits.max_samples, 64), max_prime=limits.max_prime)
    engine.warm([rows for rows in WARM_ROWS if rows <= engine.max_rows])
    ids = lm.encode_prime("")
    prediction_tree(lm, ids, 3, 2)
    score(lm, "".join(lm.vocab.chars[:2]) * 2)
    module = ServingModule(lm)  # held: a tf.function method keeps only a weak reference
    module.next_char(tf.constant(["", lm.vocab.chars[0]]))
    return create_app(lm, name, limits, cors, engine=engine), name


def run(app, name: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until interrupted; say where once it listens."""
    import logging

    import uvicorn

    # A client that leaves mid-stream is normal for a server of streams: asyncio's warning
    # for each write to its closed socket (before the stream is cancelled) is noise here.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        from seqkit.errors import SeqkitError

        raise SeqkitError(f"Cannot listen on {host}:{port} ({err.strerror or err}): choose another `port`.") from None
    sock.listen(2048)
    where = f"http://{host if family == socket.AF_INET else f'[{host}]'}:{sock.getsockname()[1]}/"
    _say(f"seqkit: serving {name} at {where} (ready; the page is at /, the API's documentation at /docs)")
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
