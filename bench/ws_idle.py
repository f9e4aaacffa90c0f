"""Memory per idle WebSocket stream on one server process, against idle plain TCP connections.

Each measurement gets a fresh ``rejoinder serve examples/shop`` process (memory freed by one would be reused by
the other), warmed up the same way, then its resident memory (VmRSS) is read before and after N connections:

* baseline: N idle plain TCP connections to the server's HTTP port (accepted, nothing sent);
* N authenticated WebSocket streams (``/v1/conversations/{id}/stream?session=…``), one per conversation, each
  opened until the server's first ``status`` frame (authenticated, replayed, subscribed), then left idle. The
  client offers permessage-deflate as browsers do (``--no-deflate`` to compare without).

Target: <= 30 KB per WebSocket.

    python bench/ws_idle.py [--connections 2000] [--no-deflate]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from echo_server import ServerProcess, create_keys, environment, serve_shop

TARGET_KB = 30.0
OPEN_AT_ONCE = 50  # handshakes in flight
SETTLE = 1.0  # seconds between the last connection and the memory reading


def raise_fd_limit(connections: int) -> None:
    """Room for ``connections`` sockets in this process and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 1024
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise SystemExit(f"the open-files limit is {hard}; {connections} connections need {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def bounded(count: int, open_one: Callable[[int], Awaitable[Any]]) -> list[Any]:
    semaphore = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(index: int) -> Any:
        async with semaphore:
            return await open_one(index)

    return list(await asyncio.gather(*(one(index) for index in range(count))))


async def start_conversations(server: ServerProcess, count: int) -> list[tuple[str, str]]:
    async with httpx.AsyncClient(
        base_url=server.base, limits=httpx.Limits(max_connections=10), timeout=30
    ) as client:

        async def start(_: int) -> tuple[str, str]:
            response = await client.post(
                "/v1/conversations",
                json={"event": "welcome"},
                headers={"Authorization": f"Bearer {server.sdk_key}"},
            )
            response.raise_for_status()
            return response.json()["conversation_id"], response.json()["session"]

        semaphore = asyncio.Semaphore(10)

        async def limited(index: int) -> tuple[str, str]:
            async with semaphore:
                return await start(index)

        return list(await asyncio.gather(*(limited(index) for index in range(count))))


async def open_stream(
    server: ServerProcess, conversation: tuple[str, str], deflate: bool
) -> ClientConnection:
    conversation_id, session = conversation
    url = f"ws://127.0.0.1:{server.port}/v1/conversations/{conversation_id}/stream?session={session}"
    websocket = await connect(
        url, compression="deflate" if deflate else None, ping_interval=None, open_timeout=30, max_queue=4
    )
    while True:  # the replay, then the status frame: the stream is fully set up
        frame = json.loads(await asyncio.wait_for(websocket.recv(), timeout=30))
        if frame["type"] == "status":
            return websocket


async def measure(server: ServerProcess, count: int, open_all: Callable[[], Awaitable[list[Any]]]) -> float:
    """KiB of server memory per connection opened by ``open_all`` (which returns them, to be closed after)."""
    await asyncio.sleep(SETTLE)
    before = server.rss_kb()
    opened = await open_all()
    await asyncio.sleep(SETTLE)
    after = server.rss_kb()
    await close_all(opened)
    print(f"  server RSS {before / 1024:7.1f} MB -> {after / 1024:7.1f} MB with {count} connections")
    return (after - before) / count


async def close_all(opened: list[Any]) -> None:
    for item in opened:
        if isinstance(item, ClientConnection):
            await item.close()
        else:
            item.close()


async def tcp_baseline(workdir: Path, sdk_key: str, count: int) -> float:
    with serve_shop(workdir, sdk_key=sdk_key) as server:

        async def open_tcp(_: int) -> Any:
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            return writer

        warm = await bounded(20, open_tcp)
        async with httpx.AsyncClient(base_url=server.base) as client:
            for _ in range(20):
                (await client.get("/healthz")).raise_for_status()
        await close_all(warm)
        print(f"idle plain TCP connections (server pid {server.pid})")
        return await measure(server, count, lambda: bounded(count, open_tcp))


async def websocket_streams(workdir: Path, sdk_key: str, count: int, deflate: bool) -> tuple[float, str]:
    with serve_shop(workdir, sdk_key=sdk_key) as server:
        started = time.perf_counter()
        conversations = await start_conversations(server, count + 20)
        print(f"started {len(conversations)} conversations in {time.perf_counter() - started:.1f} s")
        warm = await bounded(20, lambda index: open_stream(server, conversations[count + index], deflate))
        extensions = warm[0].response.headers.get("Sec-WebSocket-Extensions") or "none"
        await close_all(warm)
        print(f"idle authenticated WebSocket streams (server pid {server.pid}), extensions: {extensions}")
        per_socket = await measure(
            server,
            count,
            lambda: bounded(count, lambda index: open_stream(server, conversations[index], deflate)),
        )
        return per_socket, extensions


async def run(count: int, deflate: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="rejoinder-bench-") as tmp:
        workdir = Path(tmp)
        sdk_key = create_keys(environment(workdir))[0]
        per_tcp = await tcp_baseline(workdir, sdk_key, count)
        per_socket, extensions = await websocket_streams(workdir, sdk_key, count, deflate)
    verdict = "ok" if per_socket <= TARGET_KB else "MISSED"
    print(f"\nper idle TCP connection (baseline): {per_tcp:6.1f} KB")
    print(
        f"per idle WebSocket stream:          {per_socket:6.1f} KB (target <= {TARGET_KB:.0f} KB) {verdict}"
    )
    print(
        f"WebSocket over TCP:                 {per_socket - per_tcp:6.1f} KB; permessage-deflate: {extensions}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    args = parser.parse_args()
    raise_fd_limit(2 * args.connections)
    asyncio.run(run(args.connections, not args.no_deflate))


if __name__ == "__main__":
    main()
