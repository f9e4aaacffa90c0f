"""What an operator reads, through the service on a real SQLite store: filters, search, keyset paging both ways,
cursors refused, the bot's tokens by status (never a secret), the audit trail and its CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rejoinder.service import (
    Actor,
    AuditFilters,
    ConversationFilters,
    ConversationService,
    ServiceError,
    TokenFilters,
)
from rejoinder.service.admin import AUDIT_CSV_COLUMNS
from rejoinder.skills import load_bot
from rejoinder.store import InvalidCursor, NewAudit, Store
from rejoinder.store.pagination import encode_cursor
from tests.helpers.shop_backend import SHOP_DIR
from tests.store.factories import NOW, new_token, turn

OPERATOR = Actor(key_id="key_operator", ip="192.0.2.1", user_agent="curl/8")


class Clock:
    def __init__(self) -> None:
        self.now = NOW + timedelta(days=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'reads.db'}")
    await store.upgrade()
    yield store
    await store.close()


@pytest.fixture
async def service(store: Store) -> AsyncIterator[ConversationService]:
    shop = load_bot(SHOP_DIR)
    service = ConversationService(store, {shop.id: shop}, clock=Clock())
    yield service
    await service.aclose()


def cid(n: int) -> str:
    return f"cnv_{n:024x}"


async def seed(store: Store, count: int, *, first: int = 0, **kwargs: object) -> list[str]:
    """``count`` conversations, one a minute from NOW on: the last one is the most recently updated."""
    ids = []
    for n in range(first, first + count):
        await store.conversations.commit_turn(turn(cid(n), now=NOW + timedelta(minutes=n), **kwargs))  # type: ignore[arg-type]
        ids.append(cid(n))
    return ids


async def ids_of(service: ConversationService, **filters: object) -> list[str]:
    page = await service.list_conversations("shop", ConversationFilters(**filters), limit=200)
    return [c.id for c in page.items]


async def test_filters_narrow_the_list(service: ConversationService, store: Store) -> None:
    await store.conversations.commit_turn(turn(cid(1), now=NOW, status="closed", user={"id": "u-1"}))
    await store.conversations.commit_turn(
        turn(cid(2), now=NOW + timedelta(minutes=1), state={"variables": {}, "bot_version": "v2"})
    )
    await store.conversations.commit_turn(turn(cid(3), now=NOW + timedelta(minutes=2), user={"id": "u-3"}))
    await store.conversations.commit_turn(turn(cid(4), now=NOW + timedelta(minutes=3), bot_id="other"))

    assert await ids_of(service) == [cid(3), cid(2), cid(1)]  # newest first, the other bot's left out
    assert await ids_of(service, status="closed") == [cid(1)]
    assert await ids_of(service, status="active") == [cid(3), cid(2)]
    assert await ids_of(service, bot_version="v2") == [cid(2)]
    assert await ids_of(service, user_id="u-3") == [cid(3)]
    assert await ids_of(service, user_id="u-") == []
    assert await ids_of(service, updated_after=NOW + timedelta(seconds=30)) == [cid(3), cid(2)]
    assert await ids_of(service, skill_id="greet") == [cid(3), cid(2), cid(1)]
    assert await ids_of(service, skill_id="nope") == []


async def test_search_by_id_token_or_the_customers_words(service: ConversationService, store: Store) -> None:
    secret, token = new_token()
    token = replace(token, id="tok_" + "ab" * 12)  # as the product spells a token id
    await store.conversations.commit_turn(
        turn(cid(1), now=NOW, customer="Where is my ORDER 1234?", tokens=[token])
    )
    await store.conversations.commit_turn(
        turn(cid(2), now=NOW, customer="100% wrong", replies=["order noted"])
    )
    await store.conversations.commit_turn(turn(cid(3), now=NOW, customer="hello", bot_id="other"))
    await store.conversations.commit_turn(
        turn(cid(4), now=NOW, customer='Un "Café" au lait, s\\il vous plaît')
    )

    assert await ids_of(service, search=cid(2)) == [cid(2)]
    assert await ids_of(service, search=cid(3)) == []  # another bot's conversation stays hidden
    assert await ids_of(service, search=token.id) == [cid(1)]
    assert await ids_of(service, search=f"  order {1234}  ") == [cid(1)]  # trimmed, any case
    # Only what the customer wrote: the bot's "order noted" is not a match; LIKE's wildcards are plain text.
    assert await ids_of(service, search="order") == [cid(1)]
    assert await ids_of(service, search="100%") == [cid(2)]
    assert await ids_of(service, search="1_0") == []
    assert await ids_of(service, search="café") == [cid(4)]  # beyond plain ASCII: the text itself is compared
    assert await ids_of(service, search='"café"') == [cid(4)]
    assert await ids_of(service, search="s\\il") == [cid(4)]
    assert await ids_of(service, search=secret) == []  # a token's secret finds nothing: it is never stored
    with pytest.raises(ServiceError, match="at most 200"):
        await ids_of(service, search="x" * 201)


async def test_text_search_reads_only_the_newest_messages(
    service: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rejoinder.store.conversations.TEXT_SEARCH_WINDOW", 4)
    await store.conversations.commit_turn(turn(cid(1), now=NOW, customer="needle"))  # messages 1, 2
    await seed(store, 2, first=10)  # messages 3..6
    assert await ids_of(service, search="needle") == []
    await store.conversations.commit_turn(turn(cid(2), now=NOW, customer="needle"))
    assert await ids_of(service, search="needle") == [cid(2)]


async def test_paging_forwards_has_no_gaps_or_repeats_while_conversations_are_added(
    service: ConversationService, store: Store
) -> None:
    originals = await seed(store, 25)
    seen: list[str] = []
    cursor = None
    added = 100
    while True:
        page = await service.list_conversations("shop", ConversationFilters(), limit=7, cursor=cursor)
        seen += [c.id for c in page.items]
        # Meanwhile, new conversations arrive: newer than every page, they never shift the pages still to come.
        await seed(store, 2, first=added)
        added += 2
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(originals))


async def test_paging_backwards_returns_the_same_pages(service: ConversationService, store: Store) -> None:
    await seed(store, 12)
    filters = ConversationFilters()
    first = await service.list_conversations("shop", filters, limit=5)
    assert first.previous_cursor is None
    second = await service.list_conversations("shop", filters, limit=5, cursor=first.next_cursor)
    third = await service.list_conversations("shop", filters, limit=5, cursor=second.next_cursor)
    assert len(third.items) == 2 and third.next_cursor is None
    back = await service.list_conversations("shop", filters, limit=5, cursor=third.previous_cursor)
    assert back.items == second.items
    front = await service.list_conversations("shop", filters, limit=5, cursor=back.previous_cursor)
    assert front.items == first.items
    assert front.previous_cursor is None and front.next_cursor == first.next_cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "W10",  # []
        encode_cursor("sideways", NOW, cid(1)),
        encode_cursor("after", "yesterday", cid(1)),
        encode_cursor("after", NOW, 7),
        encode_cursor("after", NOW.replace(tzinfo=None), cid(1)),
    ],
)
async def test_a_bad_cursor_is_refused(service: ConversationService, store: Store, cursor: str) -> None:
    await seed(store, 2)
    with pytest.raises(InvalidCursor):
        await service.list_conversations("shop", ConversationFilters(), cursor=cursor)


async def test_tokens_by_status_and_never_their_secrets(service: ConversationService, store: Store) -> None:
    await seed(store, 2)
    clock = service.clock
    assert isinstance(clock, Clock)
    secrets = {}
    for name, ttl, uses in [("active", "2h", None), ("expired", "1m", None), ("used_up", "2h", 1)]:
        secret, record = await service.issue_token(cid(0), ttl=ttl, uses=uses, actor=OPERATOR)
        secrets[name] = (secret, record.id)
    secret, revoked = await service.issue_token(cid(1), actor=OPERATOR)
    secrets["revoked"] = (secret, revoked.id)
    await service.revoke_token("shop", revoked.id, OPERATOR)
    used_up = secrets["used_up"][1]
    clock.now += timedelta(minutes=5)
    await store.credentials.spend_token(used_up, clock.now)

    every = await service.list_tokens("shop", TokenFilters())
    assert {t.id for t in every.items} == {token_id for _, token_id in secrets.values()}
    for status, (_, token_id) in secrets.items():
        page = await service.list_tokens("shop", TokenFilters(status=status))
        assert [t.id for t in page.items] == [token_id], status
    only_one = await service.list_tokens("shop", TokenFilters(conversation_id=cid(1)))
    assert [t.id for t in only_one.items] == [revoked.id]
    of_conversation = await service.conversation_tokens("shop", cid(0))
    shown = repr(every.items) + repr(of_conversation)
    for secret, _ in secrets.values():
        assert secret not in shown
        assert secret.removeprefix("rjt_")[:16] not in shown


async def test_the_audit_trail_filters_and_pages(service: ConversationService, store: Store) -> None:
    await seed(store, 2)
    _, token = await service.issue_token(cid(0), actor=OPERATOR)
    await service.revoke_token("shop", token.id, Actor(key_id="key_other"))
    for minute in range(5):
        await store.audit.add(
            NewAudit(
                kind="resume",
                bot_id="shop",
                outcome="token_expired",
                at=NOW + timedelta(minutes=minute),
                conversation_id=cid(1),
            )
        )
    await store.audit.add(NewAudit(kind="resume", bot_id="other", outcome="ok", at=NOW))

    everything = await service.list_audit("shop", AuditFilters())
    assert len(everything.items) == 7 and everything.next_cursor is None
    by_kind = await service.list_audit("shop", AuditFilters(kind="token_revoked"))
    assert [e.token_id for e in by_kind.items] == [token.id]
    by_actor = await service.list_audit("shop", AuditFilters(actor="key_operator"))
    assert [e.kind for e in by_actor.items] == ["token_issued"]
    window = await service.list_audit(
        "shop",
        AuditFilters(
            conversation_id=cid(1), since=NOW + timedelta(minutes=1), until=NOW + timedelta(minutes=3)
        ),
    )
    assert [e.at for e in window.items] == [NOW + timedelta(minutes=2), NOW + timedelta(minutes=1)]
    resumes = AuditFilters(kind="resume")
    first = await service.list_audit("shop", resumes, limit=2)
    second = await service.list_audit("shop", resumes, limit=2, cursor=first.next_cursor)
    rest = await service.list_audit("shop", resumes, limit=2, cursor=second.next_cursor)
    paged = [e.id for page in (first, second, rest) for e in page.items]
    assert paged == sorted(paged, reverse=True) and len(set(paged)) == 5


async def test_audit_csv_is_streamed_bounded_and_safe_to_open(
    service: ConversationService, store: Store
) -> None:
    await seed(store, 1)
    hostile = '=HYPERLINK("http://evil.example","click")'
    for n in range(1200):
        await store.audit.add(
            NewAudit(
                kind="resume",
                bot_id="shop",
                outcome="token_not_found",
                at=NOW + timedelta(seconds=n),
                ip="192.0.2.7",
                user_agent=hostile if n == 0 else f"agent {n}",
            )
        )
    chunks = [chunk async for chunk in service.export_audit("shop", AuditFilters())]
    assert len(chunks) > 3  # written a batch at a time
    rows = list(csv.reader(io.StringIO("".join(chunks))))
    assert rows[0] == list(AUDIT_CSV_COLUMNS)
    assert len(rows) == 1 + 1200
    assert rows[1][AUDIT_CSV_COLUMNS.index("user_agent")] == "agent 1199"  # newest first
    assert rows[-1][AUDIT_CSV_COLUMNS.index("user_agent")] == "'" + hostile

    bounded = [chunk async for chunk in service.export_audit("shop", AuditFilters(), rows=650)]
    assert len(list(csv.reader(io.StringIO("".join(bounded))))) == 1 + 650


async def test_a_conversation_whole(service: ConversationService, store: Store) -> None:
    state = {"variables": {"order": "A-1"}, "waiting": "customer", "bot_version": "v1"}
    await store.conversations.commit_turn(
        turn(cid(1), now=NOW, customer="hi", replies=["a", "b"], state=state)
    )
    view = await service.view_conversation("shop", cid(1), limit=2)
    assert [m.seq for m in view.messages] == [1, 2] and view.next_after == 2
    assert view.variables == {"order": "A-1"} and view.waiting == "customer" and view.bot_version == "v1"
    rest = await service.messages_since("shop", cid(1), after=2)
    assert [m.payload["text"] for m in rest] == ["b"]
    await service.erase_conversation("shop", cid(1), OPERATOR)
    with pytest.raises(ServiceError):
        await service.messages_since("shop", cid(1), after=0)
