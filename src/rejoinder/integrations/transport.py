"""The Integrate client's connection pools: httpx transports kept apart per TLS server name.

Requests arrive addressed to the IP the SSRF guard checked, with the host's name as the TLS server name; this
transport keeps a pool per name, so that a connection verified for one name never serves another.
"""

from __future__ import annotations

import ssl
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable

import httpx

POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)


class ServerNamePools(httpx.AsyncBaseTransport):
    """Connection pools kept apart per TLS server name.

    Requests go to the IP the guard checked, so httpcore keys its pools by IP. A TLS connection is verified
    for one server name, though: sharing it with another name that resolves to the same IP would skip that
    name's certificate check. Plain http shares one pool. Pools beyond ``max_server_names`` are closed once
    idle, least recently used first.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = POOL_LIMITS,
        max_server_names: int = 64,
    ) -> None:
        # One context for all pools: loading the CA bundle is slow and would otherwise repeat per server name.
        self._ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._limits = limits
        self._max_server_names = max_server_names
        self._pools: OrderedDict[str | None, httpx.AsyncHTTPTransport] = OrderedDict()
        self._in_use: Counter[str | None] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = self._key(request)
        pool = self._pools.get(key)
        self._in_use[key] += 1
        try:
            if pool is None:
                pool = httpx.AsyncHTTPTransport(
                    verify=self._ssl_context, limits=self._limits, trust_env=False
                )
                self._pools[key] = pool
                await self._close_idle_pools()
            self._pools.move_to_end(key)
            response = await pool.handle_async_request(request)
        except BaseException:
            self._release(key)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, lambda: self._release(key)),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.aclose()

    @staticmethod
    def _key(request: httpx.Request) -> str | None:
        if request.url.scheme != "https":
            return None
        name = request.extensions.get("sni_hostname") or request.url.host
        return name.decode("ascii") if isinstance(name, bytes) else str(name)

    def _release(self, key: str | None) -> None:
        self._in_use[key] -= 1
        if self._in_use[key] <= 0:
            del self._in_use[key]

    async def _close_idle_pools(self) -> None:
        for key in list(self._pools):
            if len(self._pools) <= self._max_server_names:
                return
            if key is not None and key not in self._in_use:
                await self._pools.pop(key).aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that tells its pool's owner when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                release, self._release = self._release, None
                release()
