"""The Skills pages: each bot's skills and the conversations on each bot version; a skill's versions, graph,
source and differences; and the upload of a new version (editors), refused with its problems shown at their lines."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from rejoinder.server import state
from rejoinder.server.console.pages import Flash, render
from rejoinder.server.console.session import PREFIX, ConsoleRefused, Editor, Viewer, actor, form_of
from rejoinder.server.errors import CONSOLE_SKILL_UPLOAD, MAX_SKILL_BYTES
from rejoinder.server.skill_catalog import JSON_MEDIA_TYPE, SkillNotFound, SkillsBusy
from rejoinder.server.skill_review import MAX_HISTORY, SkillReview, VersionNotFound, problems_by_line
from rejoinder.skills import ERROR, Problem
from rejoinder.skills.model import ID_PATTERN
from rejoinder.skills.problems import errors
from rejoinder.store.records import ConsoleUserRecord

router = APIRouter()

SKILLS = PREFIX + "/skills"
UPLOAD = CONSOLE_SKILL_UPLOAD
YAML_MEDIA_TYPE = "application/yaml"
NOTICES = {"uploaded": "The new version is saved: new conversations start on it."}
_SKILL_ID = re.compile(ID_PATTERN)
Version = Annotated[int | None, Query(ge=1, le=2**31 - 1)]


def review(request: Request) -> SkillReview:
    return SkillReview(state.skill_catalog(request))


def _bot(request: Request, given: object) -> str:
    """The bot a page is about: ``?bot=`` when given, else the first the server runs."""
    bots = sorted(request.app.state.bots)
    if given in (None, ""):
        if not bots:
            raise ConsoleRefused(404, "No bots", "This server runs no bots.")
        return bots[0]
    if given not in bots:
        raise ConsoleRefused(404, "No such bot", "This server runs no bot by that id.")
    assert isinstance(given, str)
    return given


def _skill_id(value: object) -> str:
    if not isinstance(value, str) or len(value) > 100 or not _SKILL_ID.match(value):
        raise ConsoleRefused(404, "No such skill", "The bot has no skill by that id.")
    return value


def skill_url(bot_id: str, skill_id: str, page: str = "", **query: object) -> str:
    shown = {"bot": bot_id, **{key: value for key, value in query.items() if value is not None}}
    return f"{SKILLS}/{skill_id}{page}?{urlencode(shown)}"


def _may_upload(user: ConsoleUserRecord) -> bool:
    return user.role in ("editor", "owner")


@router.get(SKILLS)
async def skills_page(request: Request, user: Viewer, bot: str | None = None) -> Response:
    bot_id = _bot(request, bot)
    overview = await review(request).overview(bot_id)
    context = {
        "overview": overview,
        "bots": sorted(request.app.state.bots),
        "skill_url": skill_url,
        "may_upload": _may_upload(user),
        "upload": {"skill": "", "text": "", "problems": None},
    }
    return render(request, "skills.html", context)


@router.get(SKILLS + "/{skill_id}")
async def skill_page(
    request: Request,
    skill_id: str,
    user: Viewer,
    bot: str | None = None,
    old: Version = None,
    new: Version = None,
    notice: str | None = None,
) -> Response:
    bot_id, skill_id = _bot(request, bot), _skill_id(skill_id)
    pages = review(request)

    def link(node_id: str, line: int | None) -> str:
        return skill_url(bot_id, skill_id, "/source") + (f"#L{line}" if line is not None else "")

    try:
        view = await pages.skill(bot_id, skill_id, link)
        difference = await pages.diff(bot_id, skill_id, old, new) if old and new else None
    except VersionNotFound as missing:
        raise ConsoleRefused(404, "No such version", f"{str(missing).capitalize()}.") from None
    except SkillNotFound:
        raise ConsoleRefused(404, "No such skill", f"The bot has no skill {skill_id!r}.") from None
    context = {
        "bot_id": bot_id,
        "view": view,
        "difference": difference,
        "skill_url": skill_url,
        "may_upload": _may_upload(user),
        "flashes": [Flash("notice", NOTICES[notice])] if notice in NOTICES else [],
        "upload": {"skill": skill_id, "text": "", "problems": None},
        "max_history": MAX_HISTORY,
    }
    return render(request, "skill.html", context)


@router.get(SKILLS + "/{skill_id}/source")
async def source_page(
    request: Request, skill_id: str, _user: Viewer, bot: str | None = None, version: Version = None
) -> Response:
    bot_id, skill_id = _bot(request, bot), _skill_id(skill_id)
    try:
        source = await review(request).source(bot_id, skill_id, version)
    except VersionNotFound as missing:
        raise ConsoleRefused(404, "No such version", f"{str(missing).capitalize()}.") from None
    except SkillNotFound:
        raise ConsoleRefused(404, "No such skill", f"The bot has no skill {skill_id!r}.") from None
    return render(request, "skill_source.html", {"bot_id": bot_id, "source": source, "skill_url": skill_url})


@router.post(UPLOAD)
async def upload_skill(request: Request, _user: Editor) -> Response:
    form = await form_of(request)
    bot_id = _bot(request, form.get("bot"))
    target = _skill_id(form["skill"]) if form.get("skill") else None
    text, media_type, unreadable = await _uploaded(form)
    if unreadable is not None:
        return _refused(request, bot_id, target, text or "", [unreadable], status=400)
    try:
        upload = await state.skill_catalog(request).upload(bot_id, target, text, media_type, actor(request))
    except SkillsBusy:
        flash = Flash("error", "The bot's skills changed at the same moment; send the skill again.")
        return _refused(request, bot_id, target, text, [], status=409, flashes=[flash])
    if upload.record is None:
        return _refused(request, bot_id, target, text, upload.problems, status=422)
    return RedirectResponse(skill_url(bot_id, upload.record.skill_id, notice="uploaded"), status_code=303)


async def _uploaded(form: FormData) -> tuple[str, str, Problem | None]:
    """The skill's text (the file when one was chosen, else the text box), its media type, and why it cannot be
    read (None when it can)."""
    file = form.get("file")
    if isinstance(file, UploadFile) and file.filename:
        media_type = JSON_MEDIA_TYPE if file.filename.lower().endswith(".json") else YAML_MEDIA_TYPE
        data = await file.read(MAX_SKILL_BYTES + 1)
    else:
        pasted = form.get("text")
        media_type = YAML_MEDIA_TYPE
        data = pasted.encode() if isinstance(pasted, str) else b""
    if not data.strip():
        return "", media_type, Problem(ERROR, "Choose a skill file or paste the skill's YAML.")
    if len(data) > MAX_SKILL_BYTES:
        return "", media_type, Problem(ERROR, f"The skill is larger than {MAX_SKILL_BYTES // 1024} KB.")
    try:
        return data.decode("utf-8"), media_type, None
    except UnicodeDecodeError as error:
        return "", media_type, Problem(ERROR, f"The file is not UTF-8 text (byte {error.start}).")


def _refused(
    request: Request,
    bot_id: str,
    target: str | None,
    text: str,
    problems: list[Problem],
    *,
    status: int,
    flashes: list[Flash] | None = None,
) -> Response:
    """The upload form again, with the text sent, its problems at their lines, and nothing saved."""
    at, loose = problems_by_line(problems)
    count = len(errors(problems))
    summary = f"Nothing was saved: the skill has {count} error{'' if count == 1 else 's'}." if count else None
    context = {
        "bot_id": bot_id,
        "skill_url": skill_url,
        "flashes": flashes or ([Flash("error", summary)] if summary else []),
        "upload": {
            "skill": target or "",
            "text": text,
            "lines": text.splitlines(),
            "at": at,
            "loose": loose,
        },
    }
    return render(request, "skill_upload.html", context, status=status)
