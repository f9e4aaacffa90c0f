"""A stand-in for the shop's own backend, for the terminal story of examples/shop.

The bot's Integrate node posts the conversation token here; the "login page" logs the customer in and shows how to
resume that very conversation; the bot then fetches the customer's orders. Standard library only.

    python examples/shop/backend.py --port 8700
    SHOP_BACKEND=http://127.0.0.1:8700 rejoinder chat examples/shop --event orders
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--state", type=Path, help="keep tokens and logins in this JSON file across restarts")
    args = parser.parse_args()
    server, _ = serve(args.host, args.port, args.state)
    print(f"shop backend on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
