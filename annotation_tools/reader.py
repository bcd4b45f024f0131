"""The reading-study reader: a local web page served on 127.0.0.1 for one reader.

Why a web page and not napari: readers only look and click; a browser is familiar, full-screen,
zooms, and needs no installation on the reading workstation. The server serves the page, the
study's images by presentation index, and records answers; nothing else of the disk is
reachable (the answer key lives outside the study folder and no route leads to it). Every answer
is appended to ``answers/<reader>.jsonl`` and fsynced before the page moves on, so a crash loses
nothing and the next start resumes at the first unanswered image.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flows.study import read_answers, valid_reader

__all__ = ["ReaderServer"]

_IMAGE = re.compile(r"^/images/(\d{4})\.png$")
_ANSWERS = ("real", "synthetic")


class ReaderServer:
    """Serve one reader's session of a study on ``127.0.0.1:port`` (0: a free port)."""

    def __init__(self, study: Path, reader: str, port: int = 0) -> None:
        self.study = study.resolve()
        self.reader = valid_reader(reader)
        if not (self.study / "study.json").is_file():
            raise ValueError(f"{study} is not a study folder (no study.json); create one first")
        self.images = sorted(p.stem for p in (self.study / "images").glob("*.png"))
        self.answers_file = self.study / "answers" / f"{self.reader}.jsonl"
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def state(self) -> dict[str, Any]:
        answered = read_answers(self.study).get(self.reader, {})
        remaining = [i for i in self.images if i not in answered]
        return {
            "reader": self.reader,
            "images": self.images,
            "answered": {i: a["answer"] for i, a in answered.items()},
            "next": remaining[0] if remaining else None,
        }

    def record(self, image: str, answer: str, confidence: int | None) -> dict[str, Any]:
        if image not in self.images or answer not in _ANSWERS:
            raise ValueError("unknown image or answer")
        if confidence is not None and confidence not in range(1, 6):
            raise ValueError("confidence must be 1-5")
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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/":
                    self._send(HTTPStatus.OK, _PAGE.encode(), "text/html; charset=utf-8")
                elif self.path == "/state":
                    body = json.dumps(server.state()).encode()
                    self._send(HTTPStatus.OK, body, "application/json")
                elif (match := _IMAGE.match(self.path)) and match.group(1) in server.images:
                    body = (server.study / "images" / f"{match.group(1)}.png").read_bytes()
                    self._send(HTTPStatus.OK, body, "image/png")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/answer":
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                    return
                try:
                    length = min(int(self.headers.get("Content-Length", "0")), 4096)
                    payload = json.loads(self.rfile.read(length))
                    state = server.record(
                        str(payload["image"]), str(payload["answer"]), payload.get("confidence")
                    )
                except (ValueError, KeyError, TypeError) as error:
                    self._send(HTTPStatus.BAD_REQUEST, str(error).encode(), "text/plain")
                    return
                self._send(HTTPStatus.OK, json.dumps(state).encode(), "application/json")

        return Handler


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
  photo.src = `/images/${id}.png`;
  document.getElementById("progress").textContent =
    `Image ${index + 1} of ${total}` + (state.answered[id] ? " (answered)" : "");
  setConfidence(null); reset();
}
async function load() {
  state = await (await fetch("/state")).json();
  index = state.next === null ? state.images.length : state.images.indexOf(state.next);
  show();
}
async function answer(kind) {
  if (index >= state.images.length) return;
  const response = await fetch("/answer", {method: "POST",
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
