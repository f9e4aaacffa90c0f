"""The Keys page (owners only): each bot's API keys, and forms to create a pair, revoke a key (after a confirmation
page) and rotate one with an overlap. A new secret is shown once, on the page that answers the form; never again."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from rejoinder.server import state
from rejoinder.server.console.pages import Flash, render
from rejoinder.server.console.session import PREFIX, Owner, actor, form_of
from rejoinder.service.errors import InvalidOverlap, KeyNotActive, KeyNotFound
from rejoinder.service.keys import DEFAULT_OVERLAP, key_status
from rejoinder.store.records import ApiKeyRecord

router = APIRouter()

KEYS = PREFIX + "/keys"
NOTICES = {"revoked": "The key was revoked. Requests made with it are refused from now on."}
# The overlaps the rotate form offers, in seconds.
OVERLAPS = (
    ("0", "none: the old key stops at once"),
    ("3600", "1 hour"),
    (str(int(DEFAULT_OVERLAP.total_seconds())), "24 hours"),
    ("604800", "7 days"),
)
_STATUS = {KeyNotFound: 404, KeyNotActive: 409, InvalidOverlap: 400}


async def _page(request: Request, flashes: list[Flash], *, status: int = 200) -> Response:
    keys = state.keys(request)
    now = keys.clock()
    bots = []
    for bot_id in sorted(request.app.state.bots):
        bot = state.service(request).bot(bot_id)
        items = [{"record": key, "status": key_status(key, now)} for key in await keys.list(bot_id)]
        bots.append({"id": bot_id, "name": bot.config.name or bot_id, "api_keys": items})
    context = {
        "bots": bots,
        "overlaps": OVERLAPS,
        "default_overlap": OVERLAPS[2][0],
        "flashes": flashes,
    }
    return render(request, "keys.html", context, status=status)


@router.get(KEYS)
async def keys_page(request: Request, _user: Owner, notice: str | None = None) -> Response:
    flashes = [Flash("notice", NOTICES[notice])] if notice in NOTICES else []
    return await _page(request, flashes)


@router.post(KEYS)
async def create_keys(request: Request, _user: Owner) -> Response:
    form = await form_of(request)
    bot_id = str(form.get("bot") or "")
    if bot_id not in request.app.state.bots:
        return await _page(request, [Flash("error", "This server runs no such bot.")], status=404)
    issued = await state.keys(request).create(bot_id, actor(request))
    secrets = [
        {
            "label": "SDK key",
            "use": "web pages, allowed origins only",
            "id": issued.sdk_record.id,
            "secret": issued.sdk_key,
        },
        {
            "label": "Secret key",
            "use": "your servers only, never a web page",
            "id": issued.secret_record.id,
            "secret": issued.secret_key,
        },
    ]
    return _secrets_page(request, bot_id, "New keys", secrets)


@router.get(KEYS + "/{key_id}/revoke")
async def confirm_revoke(request: Request, key_id: str, _user: Owner) -> Response:
    try:
        key = await state.keys(request).get(key_id[:100])
    except KeyNotFound as error:
        return await _page(request, [Flash("error", str(error))], status=404)
    context = {"key": key, "status": key_status(key, state.keys(request).clock())}
    return render(request, "key_revoke.html", context)


@router.post(KEYS + "/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, _user: Owner) -> Response:
    try:
        await state.keys(request).revoke(key_id[:100], actor(request))
    except KeyNotFound as error:
        return await _page(request, [Flash("error", str(error))], status=404)
    return RedirectResponse(f"{KEYS}?notice=revoked", status_code=303)


@router.post(KEYS + "/{key_id}/rotate")
async def rotate_key(request: Request, key_id: str, _user: Owner) -> Response:
    form = await form_of(request)
    try:
        overlap = _overlap(str(form.get("overlap") or ""))
        rotated = await state.keys(request).rotate(key_id[:100], actor(request), overlap=overlap)
    except (KeyNotFound, KeyNotActive, InvalidOverlap) as error:
        return await _page(request, [Flash("error", str(error))], status=_STATUS[type(error)])
    label = "SDK key" if rotated.key.kind == "sdk" else "Secret key"
    secrets = [
        {
            "label": f"New {label}",
            "use": f"replaces {rotated.retired.id}",
            "id": rotated.key.id,
            "secret": rotated.secret,
        }
    ]
    return _secrets_page(request, rotated.key.bot_id, "Key rotated", secrets, retired=rotated.retired)


def _overlap(seconds: str) -> timedelta:
    if not seconds.isdigit() or len(seconds) > 9:
        raise InvalidOverlap("Choose how long the old key goes on working.")
    return timedelta(seconds=int(seconds))


def _secrets_page(
    request: Request,
    bot_id: str,
    title: str,
    secrets: list[dict[str, str]],
    *,
    retired: ApiKeyRecord | None = None,
) -> Response:
    context = {"bot_id": bot_id, "title": title, "secrets": secrets, "retired": retired}
    return render(request, "key_secrets.html", context)
