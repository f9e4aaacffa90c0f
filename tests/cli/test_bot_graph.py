"""``rejoinder skills graph BOT_DIR``: a whole bot, every skill with its nodes, and the jumps between skills."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app
from rejoinder.skills import load_bot
from tests.helpers.bots import EXAMPLE_BOT, write_bot

runner = CliRunner()


def graph(*args: str) -> str:
    result = runner.invoke(app, ["skills", "graph", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def drawn_name(drawing: str, node_id: str, skill_name: str) -> str:
    """The drawing id of the node labelled ``node_id`` inside the subgraph of ``skill_name``."""
    group = re.search(rf'subgraph (s\d+)\["{skill_name}', drawing)
    assert group, drawing
    found = re.search(rf'\b({group.group(1)}n\d+)\W+"{node_id}<br/>', drawing)
    assert found, f"no node {node_id} in {skill_name}"
    return found.group(1)


def test_mermaid_of_a_bot_has_every_skill_and_the_jump_between_them() -> None:
    drawing = graph(str(EXAMPLE_BOT))
    bot = load_bot(EXAMPLE_BOT)
    for skill in bot.skills.values():
        assert re.search(rf'subgraph s\d+\["{skill.id}: {skill.name}"\]', drawing)
        for node_id in skill.nodes:
            drawn_name(drawing, node_id, skill.id)
    jump = drawn_name(drawing, "to_orders", "welcome")
    orders_start = drawn_name(drawing, "greet", "orders")
    assert f'    {jump} -.->|"skill"| {orders_start}\n' in drawing
    assert "(missing)" not in drawing


def test_dot_of_a_bot_has_a_cluster_per_skill_and_the_jump_edge() -> None:
    drawing = graph(str(EXAMPLE_BOT), "--format", "dot")
    assert drawing.startswith('digraph "shop" {')
    assert drawing.count("subgraph cluster_") == 2
    jump = re.search(r'(s\d+n\d+) \[label="to_orders\\n\(jump\)"', drawing)
    greet = re.search(r'(s\d+n\d+) \[label="greet\\n\(message\)"', drawing)
    assert jump and greet, drawing
    assert f'{jump.group(1)} -> {greet.group(1)} [label="skill", style=dashed];' in drawing


def test_a_jump_to_a_given_node_of_another_skill_leads_to_that_node(tmp_path: Path) -> None:
    bot = write_bot(
        tmp_path / "bot",
        "id: hop\n",
        {
            "first": "id: first\ntriggers: {default: true}\nstart: go\nnodes:\n"
            "  go: {type: jump, skill: second, node: later}\n",
            "second": "id: second\nstart: ask\nnodes:\n"
            "  ask: {type: question, text: Hi, save_to: x, next: later}\n"
            "  later: {type: end, text: bye}\n",
        },
    )
    drawing = graph(str(bot))
    assert (
        f'{drawn_name(drawing, "go", "first")} -.->|"skill"| {drawn_name(drawing, "later", "second")}'
        in drawing
    )
    assert '(("default"))' in drawing


def test_a_single_skill_file_draws_as_before() -> None:
    drawing = graph(str(EXAMPLE_BOT / "skills" / "welcome.yaml"))
    assert "subgraph" not in drawing
    assert '    entry(("start")) --> n0\n' in drawing
    assert '[["skill orders"]]' in drawing


def test_a_bot_with_errors_is_not_drawn(tmp_path: Path) -> None:
    bot = write_bot(
        tmp_path / "bot",
        "id: broken\n",
        {
            "only": "id: only\ntriggers: {default: true}\nstart: go\nnodes:\n  go: {type: jump, skill: nowhere}\n"
        },
    )
    result = runner.invoke(app, ["skills", "graph", str(bot)])
    assert result.exit_code == 1
    assert f"{bot / 'skills' / 'only.yaml'}:5: error" in result.stderr
    assert "cannot draw a bot that does not load" in result.stderr


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_a_bot_drawing_can_go_to_a_file(tmp_path: Path, fmt: str) -> None:
    output = tmp_path / f"bot.{fmt}"
    assert graph(str(EXAMPLE_BOT), "--format", fmt, "--output", str(output)) == ""
    assert "to_orders" in output.read_text()
