"""A bot's rules for its outbound calls: which private hosts it may reach, how big an answer may be, and the
secret its requests are signed with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rejoinder import __version__
from rejoinder.integrations.ssrf import AllowList
from rejoinder.skills.model import IntegrateSettings


@dataclass(frozen=True)
class IntegratePolicy:
    """A bot's rules for outbound calls (from ``integrate:`` in rejoinder.yaml)."""

    allow_hosts: tuple[str, ...] = ()  # hostnames, IPs or CIDRs allowed even if private/loopback/link-local
    signing_secret: bytes | None = None  # resolved by the caller from signing_secret_env
    max_response_bytes: int = 1_048_576
    max_redirects: int = 3
    user_agent: str = f"rejoinder/{__version__} (+integrate)"
    allow_list: AllowList = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_hosts", tuple(self.allow_hosts))
        object.__setattr__(self, "allow_list", AllowList.parse(self.allow_hosts))
        if self.max_response_bytes <= 0:
            raise ValueError("integrate: max_response_bytes must be positive")
        if self.max_redirects < 0:
            raise ValueError("integrate: max_redirects cannot be negative")
        if self.signing_secret is not None and not self.signing_secret:
            raise ValueError("integrate: the signing secret is empty")

    @classmethod
    def from_settings(cls, settings: IntegrateSettings, environ: Mapping[str, str]) -> IntegratePolicy:
        """The policy for a bot's settings; the signing secret is read from ``environ``.

        Raises ``ValueError`` when ``signing_secret_env`` names a variable that is unset or empty: calls that
        the receiver expects to be signed must not silently go out unsigned.
        """
        secret: bytes | None = None
        if settings.signing_secret_env:
            value = environ.get(settings.signing_secret_env, "")
            if not value:
                raise ValueError(
                    f"integrate.signing_secret_env: the environment variable {settings.signing_secret_env} "
                    "is not set"
                )
            secret = value.encode("utf-8")
        return cls(
            allow_hosts=tuple(settings.allow_hosts),
            signing_secret=secret,
            max_response_bytes=settings.max_response_bytes,
        )
