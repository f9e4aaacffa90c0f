"""How many conversation streams one client may hold open in a worker: per client address, and per session.

An open stream costs a worker memory and a subscription for as long as it lasts, and opening one costs a client
nothing; without a bound, one client could hold thousands. The address is the one the app sees (a trusted
proxy's ``X-Forwarded-For`` applied), so the bound holds behind a reverse proxy too.
"""

from __future__ import annotations

from collections import Counter


class SocketQuota:
    """Open streams by client address and by session; :meth:`take` refuses one past either limit."""

    def __init__(self, per_ip: int, per_session: int) -> None:
        if per_ip < 1 or per_session < 1:
            raise ValueError("socket quotas must be at least 1")
        self.per_ip = per_ip
        self.per_session = per_session
        self._by_ip: Counter[str] = Counter()
        self._by_session: Counter[str] = Counter()

    def take_ip(self, ip: str) -> bool:
        """Count a stream of ``ip``; False (nothing counted) when it holds ``per_ip`` streams already."""
        return _take(self._by_ip, ip, self.per_ip)

    def take_session(self, session_id: str) -> bool:
        """Count a stream of ``session_id``; False (nothing counted) when it holds ``per_session`` already."""
        return _take(self._by_session, session_id, self.per_session)

    def give_back_ip(self, ip: str) -> None:
        _give_back(self._by_ip, ip)

    def give_back_session(self, session_id: str) -> None:
        _give_back(self._by_session, session_id)

    def held(self, *, ip: str | None = None, session_id: str | None = None) -> int:
        return self._by_ip[ip] if ip is not None else self._by_session[session_id or ""]


def _take(counts: Counter[str], key: str, limit: int) -> bool:
    if counts[key] >= limit:
        return False
    counts[key] += 1
    return True


def _give_back(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]  # a client gone leaves nothing behind
