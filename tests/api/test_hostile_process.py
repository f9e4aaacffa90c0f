"""A real server answers /healthz while conversations run the hostile corpus, and refuses each turn quickly."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.helpers.hostile import HOSTILE
from tests.helpers.processes import (
    REJOINDER,
    create_keys,
    end_process,
    free_port,
    serve_environment,
    wait_until_up,
)

FALLBACK = "Sorry, something went wrong on my side. Please try again in a moment."
HEALTH_WITHIN = 1.0  # seconds; an answer takes a few ms, and before, one turn held the worker for 13.9 s
TURN_WITHIN = 3.0  # seconds for a whole hostile turn over HTTP, on a loaded machine


def hostile_bot(root: Path) -> Path:
    """A bot with one skill per hostile source, started by the event ``attack_N``."""
    (root / "skills").mkdir(parents=True)
    (root / "rejoinder.yaml").write_text("id: hostile\nname: Hostile\n")
    for index, source in enumerate(HOSTILE):
        if source.startswith("{"):
            node = {"type": "message", "text": source, "next": "done"}
        else:
            node = {"type": "assign", "set": {"result": source}, "next": "done"}
        skill = {
            "id": f"attack_{index}",
            "triggers": {"events": [f"attack_{index}"]},
            "start": "run",
            "nodes": {"run": node, "done": {"type": "end", "text": "survived"}},
        }
        (root / "skills" / f"attack_{index}.json").write_text(json.dumps(skill))
    return root


def test_health_answers_while_hostile_turns_run(tmp_path: Path) -> None:
    bot = hostile_bot(tmp_path / "hostile")
    env = serve_environment(tmp_path / "hostile.db")
    sdk_key = create_keys(env, bot)["sdk_key"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "server.log").open("w") as log:
        server = subprocess.Popen(
            [REJOINDER, "serve", str(bot), "--port", str(port)], env=env, stdout=log, stderr=log, text=True
        )
    health: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not done.is_set() and len(health) < 5_000:
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                health.append(time.perf_counter() - started)
                time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    try:
        wait_until_up(base, server)
        prober.start()
        auth = {"Authorization": f"Bearer {sdk_key}"}
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            for index, source in enumerate(HOSTILE):
                started = time.perf_counter()
                answer = client.post("/v1/conversations", json={"event": f"attack_{index}"})
                took = time.perf_counter() - started
                assert answer.status_code == 201, (source, answer.text)
                texts = [message["text"] for message in answer.json()["messages"]]
                assert texts == [FALLBACK], (source, texts)  # the skill is stopped, never the worker
                assert took < TURN_WITHIN, (source, took)
    finally:
        done.set()
        prober.join(timeout=30)
        end_process(server)
    assert len(health) >= 10, "the probe hardly ran"
    assert max(health) < HEALTH_WITHIN, f"/healthz took {max(health):.2f} s at worst"
