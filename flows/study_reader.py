"""The reading-study reader: a local web page served on 127.0.0.1 for one reader.

Why a web page and not napari: readers only look and click; a browser is familiar, full-screen,
zooms, and needs no installation on the reading workstation. The server serves the page, the
study's images by presentation index, and records answers; nothing else of the disk is
reachable (the answer key lives outside the study folder and no route leads to it). Every answer
is appended to ``answers/<reader>.jsonl`` and fsynced before the page moves on, so a crash loses
nothing and the next start resumes at the first unanswered image.

Other pages open in the same browser can reach 127.0.0.1 too, so every route needs the session's
random token (in the printed address; the page sends it back in a header), the Host must be this
server (no DNS rebinding) and a foreign Origin is refused. A request body is read only when its
Content-Length is a plain number up to 4 KiB; every socket times out, and at most
``max_connections`` are served at once (others wait in the listen queue, holding no thread).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from angioflow.flows.study import StudyError, read_answers, valid_reader

__all__ = ["ReaderServer"]

_IMAGE = re.compile(r"^/images/(\d{4})\.png$")
_ANSWERS = ("real", "synthetic")
_SESSION_HEADER = "X-Reader-Token"
_MAX_BODY = 4096
_DIGITS = re.compile(r"^[0-9]{1,20}$")


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A threading server that runs at most ``max_connections`` handler threads: the accept
    loop waits for a free slot, so further connections wait in the kernel's listen queue."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hung up or sent garbage: nothing to report to the reader


class ReaderServer:
    """Serve one reader's session of a study on ``127.0.0.1:port`` (0: a free port).

    Parameters
    ----------
    study : Path
        The study folder (``study.json``, ``images/``, ``answers/``).
    reader : str
        The reader's name (:func:`flows.study.valid_reader`).
    port : int
        Port on 127.0.0.1; 0 picks a free one.
    timeout_s : float
        Socket timeout of every connection, in seconds.
    max_connections : int
        Connections served at once (one thread each).

    Raises
    ------
    StudyError
        If ``study`` is not a study folder, the reader name is unusable or the port is taken.
    """

    def __init__(
        self,
        study: Path,
        reader: str,
        port: int = 0,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 16,
    ) -> None:
        self.study = study.resolve()
        self.reader = valid_reader(reader)
        if not (self.study / "study.json").is_file():
            raise StudyError(f"{study} is not a study folder (no study.json); create one first")
        self.images = sorted(p.stem for p in (self.study / "images").glob("*.png"))
        self.answers_file = self.study / "answers" / f"{self.reader}.jsonl"
        self.token = secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        try:
            self.httpd = _BoundedHTTPServer(
                ("127.0.0.1", port), self._handler(timeout_s), max_connections
            )
        except OSError as error:
            raise StudyError(
                f"cannot serve on 127.0.0.1:{port} ({error.strerror or error}); pick another "
                "--port or 0 for any free one"
            ) from error
        bound = self.httpd.server_address[1]
        self._hosts = {f"127.0.0.1:{bound}", f"localhost:{bound}"}

    @property
    def url(self) -> str:
        """The reader's address, carrying the session token."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/?token={self.token}"

    def state(self) -> dict[str, Any]:
        answered = read_answers(self.study).get(self.reader, {})
        remaining = [i for i in self.images if i not in answered]
        return {
            "reader": self.reader,
            "images": self.images,
            "answered": {i: a["answer"] for i, a in answered.items()},
            "next": remaining[0] if remaining else None,
        }

    def record(self, payload: Any) -> dict[str, Any]:
        """Append one answer ``{"image", "answer", "confidence"?}``; ValueError when any field
        is missing, unknown or of the wrong type (nothing is coerced)."""
        if (
            not isinstance(payload, dict)
            or not {"image", "answer"} <= set(payload)
            or (set(payload) - {"image", "answer", "confidence"})
        ):
            raise ValueError('send {"image": ID, "answer": "real"|"synthetic", "confidence"}')
        image, answer = payload["image"], payload["answer"]
        confidence = payload.get("confidence")
        if not isinstance(image, str) or image not in self.images:
            raise ValueError("unknown image")
        if not isinstance(answer, str) or answer not in _ANSWERS:
            raise ValueError("answer must be 'real' or 'synthetic'")
        # bool is an int subclass: true would be stored as confidence 1
        if confidence is not None and (type(confidence) is not int or not 1 <= confidence <= 5):
            raise ValueError("confidence must be an integer 1-5 or null")
        line = json.dumps(
            {
                "image": image,
                "answer": answer,
                "confidence": confidence,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        with self._lock, open(self.answers_file, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return self.state()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def _allowed(self, headers: Any, query: str) -> bool:
        """Host is this server, Origin (when sent) is this server, and the token matches."""
        if headers.get("Host") not in self._hosts:
            return False
        origin = headers.get("Origin")
        if origin is not None and origin not in {f"http://{host}" for host in self._hosts}:
            return False
        given = headers.get(_SESSION_HEADER) or parse_qs(query).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _handler(self, timeout_s: float) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s  # socketserver applies it to every connection's socket

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

            def _send(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _admitted(self) -> str | None:
                """The request's path when it may be served, else None (answered 403)."""
                parts = urlsplit(self.path)
                if not server._allowed(self.headers, parts.query):
                    self._send(
                        HTTPStatus.FORBIDDEN,
                        b"open the address printed by 'angioflow study read' (it carries this "
                        b"session's token)",
                    )
                    return None
                return parts.path

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self._admitted()
                if path is None:
                    return
                if path == "/":
                    self._send(HTTPStatus.OK, _PAGE.encode(), "text/html; charset=utf-8")
                elif path == "/state":
                    body = json.dumps(server.state()).encode()
                    self._send(HTTPStatus.OK, body, "application/json")
                elif (match := _IMAGE.match(path)) and match.group(1) in server.images:
                    body = (server.study / "images" / f"{match.group(1)}.png").read_bytes()
                    self._send(HTTPStatus.OK, body, "image/png")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found")

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                path = self._admitted()
                if path is None:
                    return
                if path != "/answer":
                    self._send(HTTPStatus.NOT_FOUND, b"not found")
                    return
                kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if kind != "application/json":
                    self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"send application/json")
                    return
                length = (self.headers.get("Content-Length") or "").strip()
                if not length or "Transfer-Encoding" in self.headers:
                    self._send(HTTPStatus.LENGTH_REQUIRED, b"send a Content-Length")
                    return
                if not _DIGITS.match(length):
                    self._send(HTTPStatus.BAD_REQUEST, b"Content-Length must be a number")
                    return
                if int(length) > _MAX_BODY:
                    self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"an answer is under 4 KiB")
                    return
                body = self.rfile.read(int(length))
                try:
                    if len(body) != int(length):
                        raise ValueError("the body is shorter than its Content-Length")
                    state = server.record(json.loads(body, parse_constant=_no_constant))
                except ValueError as error:  # json's errors are ValueErrors too
                    self._send(HTTPStatus.BAD_REQUEST, str(error).encode())
                    return
                self._send(HTTPStatus.OK, json.dumps(state).encode(), "application/json")

        return Handler


def _no_constant(name: str) -> float:
    """json.loads hook: NaN and Infinity are no answers."""
    raise ValueError(f"{name} is not a valid value")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Reading study</title>
<style>
html, body { margin: 0; height: 100%; background: #111; color: #eee;
  font-family: system-ui, sans-serif; overflow: hidden; }
#stage { position: absolute; inset: 0 0 88px 0; overflow: hidden; cursor: grab; }
#photo { position: absolute; left: 50%; top: 50%; max-width: 100%; max-height: 100%;
  transform-origin: center center; user-select: none; -webkit-user-drag: none; }
#bar { position: absolute; left: 0; right: 0; bottom: 0; height: 88px; display: flex;
  align-items: center; justify-content: center; gap: 16px; background: #222; }
button { font-size: 20px; padding: 12px 28px; border-radius: 8px; border: 0; cursor: pointer; }
#real { background: #2e7d32; color: white; } #synthetic { background: #c62828; color: white; }
.conf { font-size: 16px; padding: 8px 12px; background: #444; color: #eee; }
.conf.on { background: #1565c0; }
#progress { margin-right: auto; padding-left: 16px; font-size: 16px; min-width: 12em; }
#help { margin-left: auto; padding-right: 16px; font-size: 13px; color: #aaa;
  text-align: right; }
#done { display: none; position: absolute; inset: 0; align-items: center;
  justify-content: center; font-size: 28px; }
</style></head>
<body>
<div id="stage"><img id="photo" alt="study image"></div>
<div id="bar">
  <span id="progress"></span>
  <button id="back" class="conf" title="previous image (B)">&larr; back</button>
  <button id="real" title="R">Real (R)</button>
  <button id="synthetic" title="S">Synthetic (S)</button>
  <span>confidence:</span>
  <button class="conf" data-c="1">1</button><button class="conf" data-c="2">2</button>
  <button class="conf" data-c="3">3</button><button class="conf" data-c="4">4</button>
  <button class="conf" data-c="5">5</button>
  <span id="help">wheel or +/- zoom, drag to pan, 0 reset<br>1-5 confidence (optional)</span>
</div>
<div id="done">All images answered. Thank you!</div>
<script>
let state = null, index = 0, confidence = null, zoom = 1, dx = 0, dy = 0;
const token = new URLSearchParams(location.search).get("token") || "";
const headers = {"X-Reader-Token": token};
const photo = document.getElementById("photo");
function place() {
  photo.style.transform =
    `translate(calc(-50% + ${dx}px), calc(-50% + ${dy}px)) scale(${zoom})`;
}
function reset() { zoom = 1; dx = 0; dy = 0; place(); }
function setConfidence(c) {
  confidence = confidence === c ? null : c;
  document.querySelectorAll("button[data-c]").forEach(
    b => b.classList.toggle("on", Number(b.dataset.c) === confidence));
}
function show() {
  const total = state.images.length, answered = Object.keys(state.answered).length;
  if (index >= total) {
    document.getElementById("done").style.display = "flex";
    document.getElementById("stage").style.display = "none";
    document.getElementById("progress").textContent = `${answered} of ${total} answered`;
    return;
  }
  const id = state.images[index];
  photo.src = `/images/${id}.png?token=${encodeURIComponent(token)}`;
  document.getElementById("progress").textContent =
    `Image ${index + 1} of ${total}` + (state.answered[id] ? " (answered)" : "");
  setConfidence(null); reset();
}
async function load() {
  state = await (await fetch("/state", {headers})).json();
  index = state.next === null ? state.images.length : state.images.indexOf(state.next);
  show();
}
async function answer(kind) {
  if (index >= state.images.length) return;
  const response = await fetch("/answer", {method: "POST",
    headers: {...headers, "Content-Type": "application/json"},
    body: JSON.stringify({image: state.images[index], answer: kind, confidence})});
  if (!response.ok) { alert("The answer was not saved: " + await response.text()); return; }
  state = await response.json();
  index = nextUnanswered(index);
  show();
}
function nextUnanswered(from) {
  const n = state.images.length;
  for (let step = 1; step <= n; step++) {
    const j = (from + step) % n;
    if (!state.answered[state.images[j]]) return j;
  }
  return n;
}
document.getElementById("real").onclick = () => answer("real");
document.getElementById("synthetic").onclick = () => answer("synthetic");
document.getElementById("back").onclick = () => { if (index > 0) { index--; show(); } };
document.querySelectorAll("button[data-c]").forEach(
  b => b.onclick = () => setConfidence(Number(b.dataset.c)));
document.addEventListener("keydown", e => {
  const k = e.key.toLowerCase();
  if (k === "r") answer("real");
  else if (k === "s") answer("synthetic");
  else if (k === "b") document.getElementById("back").onclick();
  else if ("12345".includes(k) && k.length === 1) setConfidence(Number(k));
  else if (k === "+" || k === "=") { zoom = Math.min(zoom * 1.25, 16); place(); }
  else if (k === "-") { zoom = Math.max(zoom / 1.25, 1); place(); }
  else if (k === "0") reset();
});
const stage = document.getElementById("stage");
stage.addEventListener("wheel", e => {
  e.preventDefault(); zoom = Math.min(Math.max(zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15), 1), 16);
  place();
}, {passive: false});
let drag = null;
stage.addEventListener("mousedown", e => { drag = [e.clientX - dx, e.clientY - dy]; });
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", e => {
  if (drag) { dx = e.clientX - drag[0]; dy = e.clientY - drag[1]; place(); }
});
load();
</script></body></html>
"""
