"""A stand-in for the shop's own backend, for the terminal story of examples/shop.

The bot's Integrate node posts the conversation token here; the "login page" logs the customer in and shows how to
resume that very conversation; the bot then fetches the customer's orders. Standard library only.

    python examples/shop/backend.py --port 8700
    SHOP_BACKEND=http://127.0.0.1:8700 rejoinder chat examples/shop --event orders

or, the backend running for as long as a command does, with SHOP_BACKEND set for it (this is `make chat`):

    python examples/shop/backend.py --port 8700 -- rejoinder chat examples/shop --event orders

When the port is taken, the backend listens on a free one instead and says which.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ORDERS = [{"id": "A-1001", "status": "shipped"}, {"id": "A-1002", "status": "being packed"}]


class ShopState:
    """Remembers, per conversation, the token the bot sent and whether its customer has logged in.

    With a ``path``, it is kept in that JSON file too, so that a restarted backend still knows who logged in.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.lock = threading.Lock()
        self.path = path
        self.tokens: dict[str, str] = {}
        self.logged_in: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            self.tokens, self.logged_in = saved["tokens"], saved["logged_in"]

    def save(self) -> None:
        """Write the state to its file (call with the lock held)."""
        if self.path is not None:
            self.path.write_text(json.dumps({"tokens": self.tokens, "logged_in": self.logged_in}))


def make_handler(state: ShopState, signing_secret: bytes | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep the terminal for the chat
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = (json.dumps(body) if content_type == "application/json" else str(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if signing_secret is not None and not _signed(signing_secret, self.headers, raw):
                self._send(401, {"error": "bad signature"})
                return
            if url.path != "/chat/resume-token":
                self._send(404, {"error": "not found"})
                return
            try:
                body = json.loads(raw or b"{}")
                token, conversation = body["RESUME_TOKEN"], body["conversation_ref"]
            except (ValueError, KeyError):
                self._send(400, {"error": "expected RESUME_TOKEN and conversation_ref"})
                return
            with state.lock:
                state.tokens[conversation] = token
                state.requests.append({"path": url.path, "body": body, "headers": dict(self.headers)})
                state.save()
            host = self.headers.get("Host", "127.0.0.1")
            self._send(200, {"login_url": f"http://{host}/login?conversation={conversation}"})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            conversation = query.get("conversation", "")
            if url.path == "/login":
                with state.lock:
                    token = state.tokens.get(conversation)
                    if token is not None:
                        state.logged_in[conversation] = query.get("name", "Ann")
                        state.save()
                if token is None:
                    self._send(404, "No chat is waiting for this login.\n", "text/plain")
                    return
                self._send(
                    200,
                    "You are logged in. Your shop would now resume the chat on its account page;\n"
                    "in the terminal, leave the chat (Ctrl-D) and resume it with:\n\n"
                    f"  make chat RESUME={token}\n",
                    "text/plain",
                )
            elif url.path == "/chat/orders":
                with state.lock:
                    name = state.logged_in.get(conversation)
                if name is None:
                    self._send(401, {"error": "not logged in"})
                else:
                    self._send(200, {"customer": {"name": name}, "orders": ORDERS})
            elif url.path == "/healthz":
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": "not found"})

    return Handler


def _signed(secret: bytes, headers: Any, body: bytes) -> bool:
    from rejoinder.integrations.signing import verify_signature

    return verify_signature(
        secret, headers.get("X-Rejoinder-Timestamp", ""), body, headers.get("X-Rejoinder-Signature", "")
    )


def serve(
    host: str = "127.0.0.1", port: int = 8700, state_file: Path | None = None
) -> tuple[ThreadingHTTPServer, ShopState]:
    """Start the backend in a background thread; returns the server (``server_address`` has the port) and its state."""
    state = ShopState(state_file)
    secret = os.environ.get("SHOP_SIGNING_SECRET")
    server = ThreadingHTTPServer((host, port), make_handler(state, secret.encode() if secret else None))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def serve_or_elsewhere(
    host: str, port: int, state_file: Path | None = None
) -> tuple[ThreadingHTTPServer, ShopState]:
    """``serve`` on ``port``, or on a free port when that one is taken (the caller reads which)."""
    try:
        return serve(host, port, state_file)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
    return serve(host, 0, state_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700, help="the port; a free one when it is taken")
    parser.add_argument("--state", type=Path, help="keep tokens and logins in this JSON file across restarts")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="after --: run it with SHOP_BACKEND set, then stop"
    )
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        server, _ = serve_or_elsewhere(args.host, args.port, args.state)
    except (OSError, OverflowError, ValueError) as exc:
        parser.exit(2, f"shop backend: cannot listen on {args.host}:{args.port}: {exc}\n")
    url = f"http://{args.host}:{server.server_address[1]}"
    if server.server_address[1] != args.port and args.port != 0:
        print(f"shop backend: port {args.port} is taken, so it listens on {url} instead", flush=True)
    else:
        print(f"shop backend on {url}", flush=True)
    if command:
        sys.exit(_run_beside(server, command, url))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


def _run_beside(server: ThreadingHTTPServer, command: list[str], url: str) -> int:
    """Run ``command`` with SHOP_BACKEND set to ``url``; stop the backend when it ends and return its status."""
    try:
        child = subprocess.Popen(command, env=os.environ | {"SHOP_BACKEND": url})
    except OSError as exc:
        print(f"shop backend: cannot run {command[0]}: {exc}", file=sys.stderr)
        server.shutdown()
        return 127
    # Ctrl-C is the command's to handle (the chat ends on it); the backend stops when the command does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return child.wait()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
