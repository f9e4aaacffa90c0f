"""The Users page (owners only): every console account, and forms to create one, disable one, reset a password."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from rejoinder.server.console.pages import Flash, render
from rejoinder.server.console.session import PREFIX, Owner, accounts, actor, form_of
from rejoinder.service.accounts import MIN_PASSWORD_LENGTH, ROLES, SESSION_RECHECK_SECONDS
from rejoinder.service.errors import (
    AccountExists,
    AccountNotFound,
    InvalidAccount,
    LastOwner,
    SignInThrottled,
)

router = APIRouter()

USERS = PREFIX + "/users"
# What a change that worked says, after its redirect (by name: a query string never puts text on the page).
NOTICES = {
    "created": "The user was created.",
    "disabled": f"The user was disabled and signed out (on every server within {SESSION_RECHECK_SECONDS:g} s).",
    "password_reset": (
        f"The password was changed and the user signed out (on every server within {SESSION_RECHECK_SECONDS:g} s)."
    ),
}
# A password is hashed by the same few hashers as sign-ins: a flood of those can keep a change waiting too long.
_STATUS = {
    InvalidAccount: 400,
    AccountNotFound: 404,
    AccountExists: 409,
    LastOwner: 409,
    SignInThrottled: 503,
}


async def _page(
    request: Request, flashes: list[Flash], *, status: int = 200, form: dict[str, str] | None = None
) -> Response:
    users = await accounts(request).list_users()
    active_owners = [user.id for user in users if user.role == "owner" and user.disabled_at is None]
    context = {
        "users": users,
        # The last owner who can sign in cannot be disabled (the service refuses): no button offers it.
        "last_owner": active_owners[0] if len(active_owners) == 1 else None,
        "roles": list(reversed(ROLES)),
        "min_password_length": MIN_PASSWORD_LENGTH,
        "form": form or {"email": "", "role": "viewer"},
        "flashes": flashes,
    }
    return render(request, "users.html", context, status=status)


@router.get(USERS)
async def users_page(request: Request, _user: Owner, notice: str | None = None) -> Response:
    flashes = [Flash("notice", NOTICES[notice])] if notice in NOTICES else []
    return await _page(request, flashes)


@router.post(USERS)
async def create_user(request: Request, _user: Owner) -> Response:
    form = await form_of(request)
    email = str(form.get("email") or "")[:320]
    role = str(form.get("role") or "")
    try:
        await accounts(request).create_user(email, role, str(form.get("password") or ""), actor(request))
    except (InvalidAccount, AccountExists, SignInThrottled) as error:
        return await _page(
            request,
            [Flash("error", str(error))],
            status=_STATUS[type(error)],
            form={"email": email, "role": role},
        )
    return RedirectResponse(f"{USERS}?notice=created", status_code=303)


@router.post(USERS + "/{user_id}/disable")
async def disable_user(request: Request, user_id: str, _user: Owner) -> Response:
    try:
        await accounts(request).disable_user(user_id, actor(request))
    except (AccountNotFound, LastOwner) as error:
        return await _page(request, [Flash("error", str(error))], status=_STATUS[type(error)])
    return RedirectResponse(f"{USERS}?notice=disabled", status_code=303)


@router.post(USERS + "/{user_id}/password")
async def reset_password(request: Request, user_id: str, _user: Owner) -> Response:
    form = await form_of(request)
    try:
        await accounts(request).reset_password(user_id, str(form.get("password") or ""), actor(request))
    except (InvalidAccount, AccountNotFound, SignInThrottled) as error:
        return await _page(request, [Flash("error", str(error))], status=_STATUS[type(error)])
    return RedirectResponse(f"{USERS}?notice=password_reset", status_code=303)
