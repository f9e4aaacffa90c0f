"""Run the example shop's stand-in backend (examples/shop/backend.py) inside a test, on a free loopback port."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SHOP_DIR = ROOT / "examples" / "shop"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop_backend", SHOP_DIR / "backend.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def running_backend() -> Iterator[tuple[str, object]]:
    """Yields (base URL, state) of a running backend; state has .tokens, .logged_in, .requests."""
    server, state = _module().serve("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
