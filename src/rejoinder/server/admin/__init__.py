"""The admin API of API.md (secret key): skills, conversations, tokens, API keys and the audit trail.

One module per resource; this package's :data:`router` serves them all under ``/v1``, in the order listed
here (the order of the OpenAPI document).
"""

from __future__ import annotations

from fastapi import APIRouter

from rejoinder.server.admin import audit, conversations, keys, skills, tokens

router = APIRouter(prefix="/v1", tags=["admin"])
for _resource in (skills, conversations, tokens, keys, audit):
    router.include_router(_resource.router)

__all__ = ["router"]
