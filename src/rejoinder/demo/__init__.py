"""The demo: a small shop on the same server as the chat, playing the login-and-resume story in a browser.

The server is the ordinary app of :func:`rejoinder.server.app.create_app` with the example shop bot, plus the
shop's pages and a stand-in for the shop's own backend. The bot's Integrate calls reach that backend over HTTP,
on this very server, signed with a secret made up for the run.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from fastapi import FastAPI

from rejoinder.config import Settings
from rejoinder.demo.backend import API_PREFIX, ShopBackend, backend_router
from rejoinder.demo.bot import ExampleBotMissing, demo_bot, example_bot_dir
from rejoinder.demo.site import RESUME_MESSAGE, SiteSettings, site_router
from rejoinder.server.app import create_app
from rejoinder.skills import Bot
from rejoinder.store import Store

__all__ = [
    "API_PREFIX",
    "RESUME_MESSAGE",
    "SHOP_PAGE",
    "SIGNING_SECRET_ENV",
    "ExampleBotMissing",
    "create_demo_app",
    "demo_bot",
    "demo_origins",
    "example_bot_dir",
    "public_url",
    "self_url",
]

SIGNING_SECRET_ENV = "SHOP_SIGNING_SECRET"
SHOP_PAGE = "/demo/"
LOGIN_PAGE = "/demo/login"
_WILDCARDS = ("", "0.0.0.0", "::")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def demo_origins(host: str, port: int) -> list[str]:
    """The origins a browser may open the demo at: the loopback names, and ``host`` when it is another one."""
    names = ["127.0.0.1", "localhost"]
    if host not in (*_WILDCARDS, *names):
        names.append(_url_host(host))
    return [f"http://{name}:{port}" for name in names]


def public_url(host: str, port: int) -> str:
    """Where a browser on this machine opens the demo served on ``host``:``port``."""
    return f"http://{'127.0.0.1' if host in _WILDCARDS else _url_host(host)}:{port}"


def self_url(bound_address: str, port: int) -> str:
    """Where the server reaches itself, given the address its socket is bound to."""
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound_address, bound_address)
    return f"http://{_url_host(loopback)}:{port}"


def create_demo_app(
    bot: Bot,
    *,
    store: Store,
    settings: Settings,
    sdk_key: str,
    public_base: str,
    self_base: str,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """The server for ``bot`` (see :func:`demo_bot`) with the demo shop mounted.

    ``public_base`` is where browsers open the demo (the login link points there); ``self_base`` is where the
    server reaches itself for the bot's Integrate calls. When the bot signs its calls, the secret is made up here.
    """
    app_environ = {**(environ or {}), "SHOP_BACKEND": self_base + API_PREFIX}
    secret_env = bot.config.integrate.signing_secret_env
    secret = secrets.token_urlsafe(32) if secret_env else None
    if secret_env and secret:
        app_environ[secret_env] = secret
    app = create_app({bot.id: bot}, store=store, settings=settings, environ=app_environ)
    shop = ShopBackend(login_url=public_base + LOGIN_PAGE, signing_secret=secret.encode() if secret else None)
    app.state.demo_shop = shop
    app.include_router(backend_router(shop))
    app.include_router(site_router(SiteSettings(sdk_key=sdk_key, public_base=public_base), shop))
    return app
