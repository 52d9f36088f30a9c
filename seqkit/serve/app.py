"""`seqkit serve`: a character model over HTTP, and a page where the prediction tree grows
as you type.

Routes (FastAPI; the OpenAPI page is at ``/docs``):

- TensorFlow Serving's REST shape, so that its clients work: ``GET /v1/models/NAME``,
  ``GET /v1/models/NAME/metadata``, ``POST /v1/models/NAME:predict`` (the exported
  SavedModel's ``serving_default``: next-character probabilities after each text);
- seqkit's own: ``POST /v1/generate`` (sampling, many streams, stop strings, beam search;
  ``"stream": true`` sends the text as Server-Sent Events as it is made), ``POST /v1/tree``,
  ``POST /v1/score``, ``GET /healthz``; and the page at ``/``.

Concurrent generate requests share the batched steps of one engine
(:mod:`seqkit.serve.engine`); other TensorFlow work runs on a worker thread, never on the
event loop. Every user mistake is a 4xx with ``{"error": "one sentence"}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from seqkit.decode.sampling import Sampler
from seqkit.errors import SeqkitError


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may run at once.

    Args:
        max_body: bytes of a request body.
        max_prime: characters of a prime, a text to score or to predict after.
        max_length: characters a stream may draw.
        max_samples: streams of one request.
        max_tree: nodes of a tree (width x depth bound the work of one request).
        max_concurrent: requests in flight; more get 429 with Retry-After.
        max_beam: width of a beam search.
        max_instances: texts of one predict request.
    """

    max_body: int = 1 << 20
    max_prime: int = 1024
    max_length: int = 2000
    max_samples: int = 64
    max_tree: int = 2000
    max_concurrent: int = 128
    max_beam: int = 32
    max_instances: int = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateRequest(_Strict):
    prime: str = ""
    length: int = Field(200, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    greedy: bool = False
    seed: int = 0
    num_samples: int = Field(1, ge=1)
    stop: list[str] = []
    include_stop: bool = False
    beam: int | None = Field(None, ge=1)
    stream: bool = False


class TreeRequest(_Strict):
    prime: str = ""
    width: int = Field(5, ge=1)
    depth: int = Field(3, ge=1)
    mass: float | None = Field(None, gt=0, le=1)


class ScoreRequest(_Strict):
    text: str


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    instances: list | None = None
    inputs: object | None = None
    signature_name: str | None = None


class UserError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _plain(err: SeqkitError) -> str:
    """An API message with the parameters' backquotes dropped (they are the JSON fields)."""
    return re.sub(r"`([a-z_]+)`", r"\1", str(err))


def _sentence(err: RequestValidationError) -> str:
    """The first validation error as one sentence, naming the field."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    message = first.get("msg", "invalid")
    return f"{where}: {message}." if where else f"{message}."


class _BodyLimit:
    """An ASGI middleware: a request body over ``limit`` bytes is answered 413 unread."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(413, f"The request body is larger than {self.limit:,} bytes.")(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise UserError(413, f"The request body is larger than {self.limit:,} bytes.")
            return message

        try:
            await self.app(scope, counted, send)
        except UserError as err:
            await _error(err.status, err.message)(scope, receive, send)


class _Concurrency:
    """An ASGI middleware: at most ``limit`` requests in flight (a streamed answer counts
    until its last byte); the next gets 429 with Retry-After. GET requests (the page, the
    status routes) are not counted."""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.in_flight = app, limit, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] == "GET":
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            busy = _error(429, "Too many requests are in flight: retry in a second.", {"Retry-After": "1"})
            return await busy(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(lm, name: str, limits: Limits | None = None, cors: str | None = None, engine=None) -> FastAPI:
    """The FastAPI application serving the loaded model ``lm`` under ``name``."""
    from seqkit.decode.export import ServingModule
    from seqkit.serve.engine import Engine, Job

    limits = limits or Limits()
    worker = ThreadPoolExecutor(max_workers=2, thread_name_prefix="seqkit-tf")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = engine or Engine(lm, max_rows=max(limits.max_samples, 64), max_prime=limits.max_prime)
        app.state.serving = ServingModule(lm)
        yield
        app.state.engine.close()
        worker.shutdown(wait=False)

    app = FastAPI(title=f"seqkit: {name}", lifespan=lifespan)
    if cors:
        app.add_middleware(CORSMiddleware, allow_origins=[cors], allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(_BodyLimit, limit=limits.max_body)
    app.add_middleware(_Concurrency, limit=limits.max_concurrent)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        return _error(422 if err.errors()[0].get("type") != "json_invalid" else 400, _sentence(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail).rstrip(".") + ".")

    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError):
        return _error(err.status, err.message, err.headers)

    @app.exception_handler(SeqkitError)
    async def seqkit_error(request: Request, err: SeqkitError):
        return _error(400, _plain(err))

    @app.exception_handler(Exception)
    async def failure(request: Request, err: Exception):
        return _error(500, f"The server failed on this request ({type(err).__name__}); it goes on serving.")

    async def on_worker(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)

    def prime_ids(prime: str):
        if len(prime) > limits.max_prime:
            raise UserError(413, f"The prime is longer than {limits.max_prime:,} characters.")
        return lm.encode_prime(prime)

    # -- TensorFlow Serving's shape ----------------------------------------------------------
    def check_name(model: str) -> None:
        if model != name:
            raise UserError(404, f"No model named {model!r} is served here; this server serves {name!r}.")

    @app.get("/v1/models/{model}")
    async def model_status(model: str):
        check_name(model)
        status = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        return {"model_version_status": [status]}

    @app.get("/v1/models/{model}/metadata")
    async def model_metadata(model: str):
        check_name(model)
        vocab = lm.vocab.size
        signature = {
            "inputs": {"texts": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": "texts"}},
            "outputs": {
                "probabilities": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(vocab)}]}},
                "chars": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": str(vocab)}]}},
            },
            "method_name": "tensorflow/serving/predict",
        }
        spec = {"name": name, "signature_name": "", "version": "1"}
        return {"model_spec": spec, "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}}}

    @app.post("/v1/models/{model}:predict")
    async def predict(model: str, body: PredictRequest):
        check_name(model)
        if body.signature_name not in (None, "", "serving_default"):
            raise UserError(400, f"No signature {body.signature_name!r}: this model has serving_default only.")
        if (body.instances is None) == (body.inputs is None):
            raise UserError(400, 'Give either "instances" (a list) or "inputs", as TensorFlow Serving takes them.')
        row_format = body.instances is not None
        texts = body.instances if row_format else body.inputs
        if isinstance(texts, dict):
            texts = texts.get("texts")
        if isinstance(texts, str):
            texts = [texts]
        texts = [t.get("texts") if isinstance(t, dict) else t for t in texts] if isinstance(texts, list) else None
        if not texts or not all(isinstance(t, str) for t in texts):
            raise UserError(400, 'Each instance is a text (a string, or {"texts": string}).')
        if len(texts) > limits.max_instances:
            raise UserError(413, f"At most {limits.max_instances} instances a request.")
        if max(len(t) for t in texts) > limits.max_prime:
            raise UserError(413, f"A text is longer than {limits.max_prime:,} characters.")
        unknown = sorted({c for t in texts for c in lm.vocab.unknown_chars(t)})
        if unknown:
            raise UserError(400, f"The texts have characters the model never saw: {''.join(unknown)!r}.")

        def run():
            import tensorflow as tf

            out = app.state.serving.next_char(tf.constant(texts))
            chars = [c.decode("utf-8") for c in out["chars"].numpy()]
            return out["probabilities"].numpy().tolist(), chars

        probabilities, chars = await on_worker(run)
        if row_format:
            return {"predictions": [{"probabilities": p, "chars": chars} for p in probabilities]}
        return {"outputs": {"probabilities": probabilities, "chars": chars}}

    # -- seqkit's own --------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz():
        streams = sum(len(job.rows) for job in list(app.state.engine.active))
        return {"status": "ok", "model": name, "streams": streams}

    @app.post("/v1/generate")
    async def generate(body: GenerateRequest, request: Request):
        if body.length > limits.max_length:
            raise UserError(413, f"length is more than {limits.max_length:,} characters.")
        if body.num_samples > limits.max_samples:
            raise UserError(413, f"num_samples is more than {limits.max_samples}.")
        ids = prime_ids(body.prime)
        if body.beam is not None:
            from seqkit.decode.search import beam_search

            if body.beam > limits.max_beam:
                raise UserError(413, f"beam is more than {limits.max_beam}.")
            beams = await on_worker(beam_search, lm, ids, body.beam, body.length, body.stop, body.include_stop)
            rows = [{"text": b.text, "log_prob": b.log_prob, "log_prob_per_char": b.per_char} for b in beams]
            return {"prime": body.prime, "beams": rows}
        sampler = Sampler(body.temperature, body.top_k, body.top_p, body.greedy)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        put = lambda event: loop.call_soon_threadsafe(events.put_nowait, event)  # noqa: E731
        job = Job(
            [ids] * body.num_samples,
            body.length,
            sampler,
            body.seed,
            list(body.stop),
            body.include_stop,
            on_done=lambda samples: put(("done", samples)),
            on_text=(lambda stream, text: put(("text", (stream, text)))) if body.stream else None,
            on_error=lambda err: put(("error", err)),
        )
        app.state.engine.submit(job)
        if not body.stream:
            try:
                while True:
                    kind, value = await events.get()
                    if kind == "done":
                        return {"prime": body.prime, "seed": body.seed, "samples": [s.to_dict() for s in value]}
                    if kind == "error":
                        raise value
            except asyncio.CancelledError:
                job.cancelled = True
                raise

        async def sse():
            try:
                while True:
                    kind, value = await events.get()
                    if kind == "text":
                        yield f"data: {json.dumps({'stream': value[0], 'text': value[1]})}\n\n"
                    elif kind == "done":
                        samples = [s.to_dict() for s in value]
                        yield f"event: done\ndata: {json.dumps({'samples': samples})}\n\n"
                        return
                    else:
                        yield f"event: error\ndata: {json.dumps({'error': str(value)})}\n\n"
                        return
            finally:
                job.cancelled = True  # a client gone mid-stream frees its rows

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/tree")
    async def tree(body: TreeRequest):
        from seqkit.decode.search import prediction_tree

        bound = sum(min(body.width, lm.vocab.size - 1) ** level for level in range(1, body.depth + 1))
        if bound > limits.max_tree:
            raise UserError(
                413, f"A tree of width {body.width} and depth {body.depth} can have over {limits.max_tree:,} nodes."
            )
        ids = prime_ids(body.prime)
        nodes = await on_worker(prediction_tree, lm, ids, body.width, body.depth, (), body.mass)
        return {"prime": body.prime, "tree": [n.to_dict() for n in nodes]}

    @app.post("/v1/score")
    async def score(body: ScoreRequest):
        from seqkit.decode.scoring import score as score_text

        if len(body.text) > limits.max_prime:
            raise UserError(413, f"The text is longer than {limits.max_prime:,} characters.")
        result = await on_worker(score_text, lm, body.text)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}

    # -- the page ------------------------------------------------------------------------------
    static = resources.files("seqkit.serve") / "static"

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8").replace("{{NAME}}", name))

    @app.get("/static/{file}")
    async def asset(file: str):
        types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        kind = next((t for suffix, t in types.items() if file.endswith(suffix)), None)
        if kind is None or "/" in file or not (static / file).is_file():
            raise UserError(404, f"No file {file!r} here.")
        return Response((static / file).read_bytes(), media_type=kind)

    return app
