"""The admin API's skills: upload (a new version), validate, list, read and delete.

Skills are versioned (see :mod:`rejoinder.server.skill_catalog`): each upload or deletion makes a new bot
version for new conversations, while conversations already under way finish on the version they began on.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from rejoinder.server import state
from rejoinder.server.admin.caller import Admin
from rejoinder.server.errors import PROBLEM_MEDIA_TYPE, Problem, problem_responses
from rejoinder.server.skill_catalog import (
    JSON_MEDIA_TYPE,
    SkillInUse,
    SkillNotFound,
    SkillsBusy,
)
from rejoinder.skills import Bot
from rejoinder.skills import Problem as SkillProblem
from rejoinder.skills.model import ID_PATTERN
from rejoinder.skills.problems import errors
from rejoinder.store.bots import SkillVersionRecord
from rejoinder.store.records import iso_z

YAML_MEDIA_TYPE = "application/yaml"
_YAML_TYPES = {YAML_MEDIA_TYPE, "application/x-yaml", "text/yaml", "text/x-yaml"}
_SKILL_BODY = {
    "required": True,
    "description": "One skill, as YAML (`Content-Type: application/yaml`) or JSON (`application/json`).",
    "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}

router = APIRouter()
SkillId = Annotated[str, Path(pattern=ID_PATTERN, max_length=100, description="The skill's id ([a-z0-9_]+).")]


# ---------------------------------------------------------------------------------------------- problems


_SKILL_TITLES = {
    "invalid_skill": "The skill is not valid",
    "skill_in_use": "Other skills still need this one",
}


class SkillProblems(Problem):
    """A problem document that also lists the skill problems found, each with its file, line and node."""

    def __init__(self, status: int, type: str, detail: str, problems: list[SkillProblem]) -> None:
        super().__init__(status, type, detail, title=_SKILL_TITLES.get(type))
        self.problems = problems

    def to_response(self) -> JSONResponse:
        body = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "problems": [_problem_item(problem) for problem in self.problems],
        }
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM_MEDIA_TYPE)


def _problem_item(problem: SkillProblem) -> dict[str, Any]:
    return {
        "severity": problem.severity,
        "message": problem.message,
        "file": problem.file,
        "line": problem.line,
        "skill": problem.skill,
        "node": problem.node,
        "text": problem.format(),
    }


def _invalid_skill(problems: list[SkillProblem]) -> SkillProblems:
    found = errors(problems)
    listed = "; ".join(str(problem) for problem in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    count = f"{len(found)} error{'' if len(found) == 1 else 's'}"
    return SkillProblems(422, "invalid_skill", f"The skill has {count}: {listed}{more}.", problems)


def _skill_not_found(skill_id: str) -> Problem:
    return Problem(
        404, "skill_not_found", f"The bot has no skill {skill_id!r}. GET /v1/skills lists its skills."
    )


def _busy() -> Problem:
    return Problem(409, "conflict", "The bot's skills changed at the same moment; send the request again.")


# ---------------------------------------------------------------------------------------------- routes


@router.put(
    "/skills/{skill_id}",
    summary="Upload a skill (a new version of it)",
    openapi_extra={"requestBody": _SKILL_BODY},
    responses={
        200: {"description": "A new version of an existing skill"},
        **problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
    },
    status_code=201,
)
async def put_skill(skill_id: SkillId, request: Request, caller: Admin) -> JSONResponse:
    text, media_type = await _skill_body(request)
    try:
        upload = await state.skill_catalog(request).upload(caller.bot.id, skill_id, text, media_type)
    except SkillsBusy:
        raise _busy() from None
    if upload.record is None:
        raise _invalid_skill(upload.problems)
    body = {
        "id": skill_id,
        "version": upload.record.version,
        "bot_version": upload.record.bot_version,
        "created_at": iso_z(upload.record.created_at),
        "warnings": [_problem_item(problem) for problem in upload.problems],
    }
    return JSONResponse(body, status_code=200 if upload.replaced else 201)


@router.post(
    "/skills:validate",
    summary="Check a skill without storing it",
    openapi_extra={"requestBody": _SKILL_BODY},
    responses=problem_responses(400, 401, 403, 413, 415, 503),
)
async def validate_skill_upload(request: Request, caller: Admin) -> JSONResponse:
    text, media_type = await _skill_body(request)
    problems = await state.skill_catalog(request).check(caller.bot.id, text, media_type)
    valid = not errors(problems)
    return JSONResponse({"valid": valid, "problems": [_problem_item(problem) for problem in problems]})


@router.get("/skills", summary="List the bot's skills", responses=problem_responses(401, 403, 503))
async def list_skills(request: Request, caller: Admin) -> JSONResponse:
    catalog = state.skill_catalog(request)
    bot = await catalog.sync(caller.bot.id)
    _, changes = await catalog.versions.current(caller.bot.id)
    items = [_skill_item(bot, skill_id, changes.get(skill_id)) for skill_id in sorted(bot.skills)]
    return JSONResponse({"items": items, "next_cursor": None})


@router.get(
    "/skills/{skill_id}",
    summary="A skill, its source and its versions",
    responses=problem_responses(401, 403, 404, 503),
)
async def get_skill(skill_id: SkillId, request: Request, caller: Admin) -> JSONResponse:
    catalog = state.skill_catalog(request)
    bot = await catalog.sync(caller.bot.id)
    if skill_id not in bot.skills:
        raise _skill_not_found(skill_id)
    history = await catalog.versions.history(caller.bot.id, skill_id)
    item = _skill_item(bot, skill_id, history[-1] if history else None)
    item["definition"] = bot.skills[skill_id].model_dump(mode="json", by_alias=True, exclude_none=True)
    item["source"] = history[-1].source if history else None
    item["media_type"] = history[-1].media_type if history else None
    item["versions"] = [
        {
            "version": change.version,
            "deleted": change.deleted,
            "bot_version": change.bot_version,
            "created_at": iso_z(change.created_at),
        }
        for change in history
    ]
    return JSONResponse(item)


@router.delete(
    "/skills/{skill_id}",
    status_code=204,
    summary="Delete a skill (as a new version)",
    responses=problem_responses(401, 403, 404, 409, 503),
)
async def delete_skill(skill_id: SkillId, request: Request, caller: Admin) -> Response:
    try:
        await state.skill_catalog(request).delete(caller.bot.id, skill_id)
    except SkillNotFound:
        raise _skill_not_found(skill_id) from None
    except SkillInUse as in_use:
        listed = "; ".join(str(problem) for problem in in_use.problems[:3])
        detail = f"Other skills still need {skill_id!r}: {listed}. Change them first."
        raise SkillProblems(409, "skill_in_use", detail, in_use.problems) from None
    except SkillsBusy:
        raise _busy() from None
    return Response(status_code=204)


def _skill_item(bot: Bot, skill_id: str, change: SkillVersionRecord | None) -> dict[str, Any]:
    skill = bot.skills[skill_id]
    return {
        "id": skill_id,
        "name": skill.name,
        "description": skill.description,
        "events": list(skill.triggers.events),
        "default": skill.triggers.default,
        "nodes": len(skill.nodes),
        "origin": "upload" if change is not None else "directory",
        "version": change.version if change is not None else None,
        "updated_at": iso_z(change.created_at) if change is not None else None,
        "bot_version": bot.version,
    }


async def _skill_body(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == JSON_MEDIA_TYPE or content_type.endswith("+json"):
        media_type = JSON_MEDIA_TYPE
    elif content_type in _YAML_TYPES:
        media_type = YAML_MEDIA_TYPE
    else:
        raise Problem(
            415,
            "unsupported_media_type",
            "Send the skill with Content-Type: application/yaml (YAML) or application/json (JSON).",
        )
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as error:
        raise Problem(400, "malformed_body", f"The skill is not UTF-8 text (byte {error.start}).") from None
    return text, media_type
