"""The blind voting page: a Starlette app over a comparison folder (one jinja2 page, a small JSON API).

Blind by construction: the page and every response before a vote name no model, LoRA or image path. Images are
served as ``/img/<item token>/<slot>`` (the server maps the slot to the model), the item token and the order
signature are keyed with a per-process secret, and the names come back only in the answer to a vote.

API (JSON; every error is ``{"error": ...}`` with a 4xx status):
  GET  /api/state  -> {done, total, mode, item}        item: {token, order, prompt, seed, slots, images} | null
  POST /api/vote   {token, order, choice: 1..slots | "tie" | "both_bad", notes?}
                   -> {vote, reveal: [{slot, model, lora_strength, base}], done, total, item}
  POST /api/undo   -> {undone: {prompt, seed} | null, done, total, item}  (item: the undone one, to vote again)"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from lora_audit.errors import EvidenceError
from lora_audit.votes.blind_image import NotAnImage, strip_metadata
from lora_audit.votes.data import ComparisonFolder, load_folder
from lora_audit.votes.queue import Queue, Task, shown_order
from lora_audit.votes.store import MODES, NON_MODEL_CHOICES, Vote, VoteStore

MAX_BODY = 64 * 1024
MAX_NOTES = 10_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
REVEAL_MS = 1500


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "internal error"}, 500)


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send JSON (Content-Type: application/json)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"request body over {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(400, "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return data


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise HTTPException(400, f"missing field {name!r}")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise HTTPException(400, f"field {name!r} has the wrong type")
    return value


def _page(mode: str, voter: str) -> str:
    from lora_audit.report.templates import environment

    return environment().get_template("vote.html.j2").render(mode=mode, voter=voter, reveal_ms=REVEAL_MS,
                                                              max_notes=MAX_NOTES)


def is_loopback_host(header: str) -> bool:
    """A ``Host:`` header naming this machine: localhost, 127.0.0.0/8 or ::1, with or without a port."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1] or [::1]:8765
        host, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return False
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
        if not port.isdigit():
            return False
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackHostOnly:
    """ASGI middleware against DNS rebinding: a page on evil.example whose name is re-pointed at 127.0.0.1 reaches
    this server with ``Host: evil.example``; every request whose Host is not a loopback name or address gets 400."""

    def __init__(self, app: Any, allow_remote: bool = False):
        self.app = app
        self.allow_remote = allow_remote

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self.allow_remote:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if not is_loopback_host(host):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = JSONResponse({"error": "Host header is not a loopback name or address (localhost, "
                                                  "127.0.0.1, [::1]); start the server with --allow-remote to "
                                                  "serve other names"}, 400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(folder: Path, mode: str = "best-of", voter: str = "anonymous", allow_remote: bool = False
               ) -> Starlette:
    """The voting app for ``voter`` on a comparison folder (EvidenceError when the folder is not one). Requests
    with a ``Host:`` that is not loopback are refused (400) unless ``allow_remote``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not voter.strip():
        raise ValueError("voter must not be empty")
    v = _VotePage(load_folder(folder), mode, voter)
    routes = [Route("/", v.index), Route("/api/state", v.get_state), Route("/api/vote", v.vote, methods=["POST"]),
              Route("/api/undo", v.undo, methods=["POST"]), Route("/img/{token}/{slot:int}", v.image)]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _internal_error},
                    middleware=[Middleware(LoopbackHostOnly, allow_remote=allow_remote)])
    app.state.queue = v.queue
    return app


class _VotePage:
    """The handlers of one voter's page on one comparison folder."""

    def __init__(self, cf: ComparisonFolder, mode: str, voter: str):
        self.mode, self.voter = mode, voter
        self.root = cf.path.resolve()
        self.store = VoteStore(cf.path)
        self.queue = Queue(cf, mode, voter, self.store, secrets.token_bytes(16))
        self.lock = threading.Lock()  # one check-then-write at a time in this process (the store serializes processes)
        self.page = _page(mode, voter)

    def item_json(self, task: Task | None) -> dict[str, Any] | None:
        if task is None:
            return None
        token = self.queue.token(task)
        return {"token": token, "order": self.queue.order_signature(task), "prompt": task.item.prompt,
                "seed": task.item.seed, "slots": len(task.models),
                "images": [f"/img/{token}/{i}" for i in range(1, len(task.models) + 1)]}

    def state(self, item: Task | None = None) -> dict[str, Any]:
        done, total, nxt = self.queue.progress()
        return {"done": done, "total": total, "mode": self.mode, "item": self.item_json(item or nxt)}

    def task_of(self, data: dict[str, Any]) -> Task:
        task = self.queue.by_token(_field(data, "token", str))
        if task is None:
            raise HTTPException(404, "unknown item (the server may have restarted): reload the page")
        return task

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers={"Cache-Control": "no-store"})

    async def get_state(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.state))

    async def vote(self, request: Request) -> Response:
        data = await _json_body(request)
        task = self.task_of(data)
        if _field(data, "order", str) != self.queue.order_signature(task):
            raise HTTPException(409, "this item was shown in another order: reload the page")
        order = shown_order(task, self.voter)
        choice = _choice(_field(data, "choice", (int, str)), order)
        notes = _field(data, "notes", str) if "notes" in data else ""
        if len(notes) > MAX_NOTES:
            raise HTTPException(413, f"notes over {MAX_NOTES} characters")

        def cast() -> tuple[Vote, dict[str, Any]]:
            with self.lock:
                if task.key in self.queue.judged():
                    raise HTTPException(409, "already voted on this item (another window?): reload the page")
                stored = self.store.add(Vote(comparison_id=task.item.comparison_id, prompt=task.item.prompt,
                                             seed=task.item.seed, mode=self.mode, shown=order, choice=choice,
                                             voter=self.voter, notes=notes.strip()))
            return stored, self.state()

        stored, after = await run_in_threadpool(cast)
        reveal = [{"slot": i, "model": m, "lora_strength": task.item.shot(m).lora_strength,
                   "base": not task.item.shot(m).lora} for i, m in enumerate(order, 1)]
        chosen = order.index(stored.choice) + 1 if stored.winner else None
        return JSONResponse({"vote": {"id": stored.id, "choice": stored.choice, "slot": chosen,
                                      "notes": stored.notes}, "reveal": reveal, **after})

    async def undo(self, request: Request) -> Response:
        def run() -> dict[str, Any]:
            with self.lock:
                mine = self.store.votes(voter=self.voter, kind="human")
                if mine and mine[-1].mode != self.mode:
                    raise HTTPException(409, f"your last vote was in {mine[-1].mode} mode: undo it there")
                undone = self.store.undo_last(self.voter, "human")
            if undone is None:
                return {"undone": None, **self.state()}
            return {"undone": {"prompt": undone.prompt, "seed": undone.seed},
                    **self.state(self.queue.by_key(undone.key))}

        return JSONResponse(await run_in_threadpool(run))

    async def image(self, request: Request) -> Response:
        task = self.queue.by_token(request.path_params["token"])
        slot = request.path_params["slot"]
        if task is None or not 1 <= slot <= len(task.models):
            raise HTTPException(404, "no such image")
        path = (self.root / task.item.shot(shown_order(task, self.voter)[slot - 1]).image).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise HTTPException(404, "no such image")

        def read() -> tuple[bytes, str]:
            # Blind in the bytes too: the files keep A1111's "parameters" chunk (LoRA name, strength); the copy
            # served has every text/EXIF/XMP block removed. No file name, date or ETag goes out either.
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise HTTPException(413, f"image over {MAX_IMAGE_BYTES} bytes")
            try:
                return strip_metadata(path.read_bytes())
            except NotAnImage as e:
                raise HTTPException(415, f"cannot serve this image blind: {e}") from None

        body, media = await run_in_threadpool(read)
        return Response(body, media_type=media, headers={"Cache-Control": "no-store"})


def _choice(choice: int | str, order: tuple[str, ...]) -> str:
    """A vote's choice: a slot number as the model shown there, or one of the non-model choices."""
    if isinstance(choice, int):
        if not 1 <= choice <= len(order):
            raise HTTPException(422, f"slot {choice} is not shown (slots 1..{len(order)})")
        return order[choice - 1]
    if choice not in NON_MODEL_CHOICES:
        raise HTTPException(422, f"choice must be a slot number, {' or '.join(NON_MODEL_CHOICES)}")
    return choice


def check_host(host: str, allow_remote: bool) -> str | None:
    """None for a loopback host; a warning for another one with ``allow_remote``; EvidenceError without it."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    if not allow_remote:
        raise EvidenceError(f"--host {host} is not a loopback address: anyone who reaches it can vote and see the "
                            "images; add --allow-remote if that is what you want")
    return f"warning: serving on {host}: anyone who can reach this address can vote and see the images"


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        raise EvidenceError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def serve(folder: Path, host: str = "127.0.0.1", port: int = 8765, mode: str = "best-of", voter: str = "anonymous",
          allow_remote: bool = False, announce: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve the voting page until interrupted. ``announce`` gets {url, folder, mode, voter, done, total} once the
    port is open (port 0 picks a free one). EvidenceError for a bad folder, a refused host or a busy port."""
    import uvicorn

    warning = check_host(host, allow_remote)
    app = create_app(folder, mode, voter, allow_remote)
    sock = _listen(host, port)
    if warning:
        print(warning, file=sys.stderr)
    name = host.strip("[]")
    done, total, _ = app.state.queue.progress()
    url = f"http://{f'[{name}]' if ':' in name else name}:{sock.getsockname()[1]}/"
    if announce:
        announce({"url": url, "folder": str(folder), "mode": mode, "voter": voter, "done": done, "total": total})
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn has shut down cleanly and re-raised the Ctrl+C
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
