"""``rejoinder keys create`` and ``rejoinder serve`` as real processes on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import (
    COMMAND_TIMEOUT,
    REJOINDER,
    ServeProcess,
    create_keys,
    free_port,
    serve_environment,
)


def test_keys_then_serve_then_a_conversation_then_a_clean_shutdown(tmp_path: Path) -> None:
    env = serve_environment(tmp_path / "served.db")
    keys = create_keys(env)
    assert set(keys) == {"bot", "sdk_key", "secret_key", "sdk_key_id", "secret_key_id"}
    assert (
        keys["bot"] == "shop" and keys["sdk_key"].startswith("pk_") and keys["secret_key"].startswith("sk_")
    )

    log = tmp_path / "server.log"
    with ServeProcess(EXAMPLE_BOT, env, log) as server:
        server.sdk_key = keys["sdk_key"]
        server.start()
        conversation = server.start_conversation(event="welcome")
        reply = httpx.post(
            f"{server.base}/v1/conversations/{conversation['conversation_id']}/messages",
            json={"choice": "hours", "client_message_id": "c-1"},
            headers={"Authorization": f"Bearer {conversation['session']}"},
            timeout=10,
        )
        assert reply.status_code == 200
        assert reply.json()["messages"][-1]["text"] == "We're open every day from 9:00 to 18:00."
        status = server.stop()
    output = log.read_text()
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert status in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert server.base in output
    log_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [line for line in log_lines if line["logger"] == "rejoinder.access"]
    assert {"method": "POST", "status": 201, "route": "/v1/conversations"}.items() <= requests[-2].items()
    for secret in (keys["sdk_key"], conversation["session"]):
        assert secret not in output


def test_a_broken_bot_stops_start_up_with_file_and_line(tmp_path: Path) -> None:
    bot = tmp_path / "broken"
    (bot / "skills").mkdir(parents=True)
    (bot / "rejoinder.yaml").write_text("id: broken\n")
    (bot / "skills" / "hello.yaml").write_text(
        "id: hello\nstart: greet\nnodes:\n  greet:\n    type: message\n    text: hi\n    next: nowhere\n"
    )

    result = subprocess.run(
        [REJOINDER, "serve", str(bot), "--port", str(free_port())],
        env=serve_environment(tmp_path / "unused.db"),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )

    assert result.returncode == 1
    assert "hello.yaml:7" in result.stderr
    assert "nowhere" in result.stderr


@pytest.mark.timeout(240)  # two workers start slowly on a busy machine (58 s seen at load 10 on 2 cores)
def test_metrics_of_several_workers_are_one_count_whichever_worker_answers(tmp_path: Path) -> None:
    with ServeProcess(
        EXAMPLE_BOT, serve_environment(tmp_path / "workers.db"), tmp_path / "server.log", workers=2
    ) as server:
        server.create_keys()
        server.start()
        base = server.base
        # A new connection per request: the kernel hands them to either worker.
        started = server.start_conversation(event="welcome")
        for number in range(8):
            answer = httpx.post(
                f"{base}/v1/conversations/{started['conversation_id']}/messages",
                json={"text": "something else", "client_message_id": f"m-{number}"},
                headers={"Authorization": f"Bearer {started['session']}"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text

        counts = set()
        for _ in range(8):
            scraped = httpx.get(f"{base}/metrics", timeout=10).text
            [line] = [
                line
                for line in scraped.splitlines()
                if line.startswith("rejoinder_turns_total{") and 'kind="message"' in line
            ]
            counts.add(float(line.rsplit(" ", 1)[1]))
        assert counts == {8.0}
        server.stop(grace=60)
