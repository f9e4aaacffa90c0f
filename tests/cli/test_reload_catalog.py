"""What ``serve --reload`` does on a change, in-process: the edited directory runs, under the skills uploaded since."""

from __future__ import annotations

from pathlib import Path

from rejoinder.cli.reload import SkillFileWatcher
from tests.helpers.admin_api import running_admin_api, write_admin_bots
from tests.helpers.clients import start

# Uploaded through the admin API: it needs the node ``ask`` of the directory's skill ``talk``.
LEANS_ON_ASK = (
    "id: extra\ntriggers: {events: [extra]}\nstart: go\nnodes:\n  go: {type: jump, skill: talk, node: ask}\n"
)


async def test_a_reload_that_clashes_with_an_upload_keeps_the_running_version(tmp_path: Path) -> None:
    root = write_admin_bots(tmp_path / "bots")
    talk = root / "chat" / "skills" / "talk.yaml"
    async with running_admin_api(root, tmp_path / "reload.db") as api:
        uploaded = await api.put_skill("extra", LEANS_ON_ASK)
        assert uploaded.status_code in (200, 201), uploaded.text
        catalog = api.app.state.skill_catalog
        reports: list[str] = []
        watcher = SkillFileWatcher({"chat": root / "chat"}, report=reports.append)
        running = catalog.service.bot("chat").version

        talk.write_text(talk.read_text().replace("ask", "prompt"))
        assert await watcher.reload(catalog, "chat") is None
        assert catalog.service.bot("chat").version == running
        assert "node 'go': " in "\n".join(reports)
        assert reports[-1] == (
            f"{root / 'chat'}: not reloaded, the skills clash with skills uploaded to the server; "
            f"bot 'chat' keeps running version {running}"
        )

        talk.write_text(talk.read_text().replace("prompt", "ask").replace("Hello!", "Hi again!"))
        reloaded = await watcher.reload(catalog, "chat")
        assert reloaded is not None and reloaded.version != running
        assert set(reloaded.skills) == {"talk", "handoff", "extra"}  # the upload stays
        answer = await start(api.http, api.sdk_key, event="hello")
        assert answer.status_code == 201, answer.text
        assert answer.json()["messages"][0]["text"] == "Hi again!"
