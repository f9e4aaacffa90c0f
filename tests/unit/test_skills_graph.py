"""Drawing skills: edges and their labels, Mermaid, dot, and SVG through Graphviz."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rejoinder.skills import GraphvizMissing, Skill, load_bot, node_edges, render_svg, to_dot, to_mermaid

VALID_BOT = Path(__file__).parents[1] / "fixtures" / "skills" / "valid_bot"


@pytest.fixture(scope="module")
def login() -> Skill:
    return load_bot(VALID_BOT).skills["login_resume"]


@pytest.fixture(scope="module")
def welcome() -> Skill:
    return load_bot(VALID_BOT).skills["welcome"]


def test_edges_carry_the_field_and_a_label(login: Skill, welcome: Skill) -> None:
    assert [(e.field, e.target, e.label) for e in node_edges(login.nodes["send_token"])] == [
        ("next", "wait_login", "next"),
        ("on_error", "backend_down", "on_error"),
    ]
    assert [(e.field, e.path, e.target, e.label) for e in node_edges(login.nodes["after_login"])] == [
        ("branch", ("branches", 0, "next"), "welcome_back", 'resume_reply == "RESUME"'),
        ("else", ("else",), "wait_login", "else"),
    ]
    assert [(e.field, e.target, e.label) for e in node_edges(welcome.nodes["menu"])] == [
        ("choice", "to_login", "Log in"),
        ("choice", "hours", "Opening hours"),
        ("else", "not_understood", "else"),
    ]
    assert node_edges(login.nodes["done"]) == []


def test_dot_labels_nodes_with_id_and_type_and_edges_with_fields(login: Skill) -> None:
    dot = to_dot(login)
    assert dot.startswith('digraph "login_resume" {\n')
    assert dot.rstrip().endswith("}")
    assert 'n0 [label="greet\\n(message)", shape=box];' in dot
    assert 'n4 [label="after_login\\n(condition)", shape=diamond];' in dot
    assert "entry -> n0;" in dot
    assert 'n2 -> n3 [label="next"];' in dot
    assert 'n2 -> n6 [label="on_error", style=dashed];' in dot
    assert 'n4 -> n5 [label="resume_reply == \\"RESUME\\""];' in dot
    assert 'n4 -> n3 [label="else"];' in dot


def test_mermaid_draws_nodes_edges_and_jumps_to_other_skills(welcome: Skill) -> None:
    mermaid = to_mermaid(welcome)
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    entry(("start")) --> n0' in lines
    assert '    n0[/"menu<br/>(question)"/]' in lines
    assert '    n0 -->|"Log in"| n3' in lines
    assert '    n0 -->|"else"| n1' in lines
    assert '    x0[["skill login_resume"]]' in lines
    assert '    n3 -.->|"skill"| x0' in lines


def test_mermaid_escapes_text_and_survives_a_node_called_end() -> None:
    skill = Skill.model_validate(
        {
            "id": "s",
            "start": "ask",
            "nodes": {
                "ask": {"type": "condition", "branches": [{"if": 'a < 3 and b == "x|y"', "next": "end"}]},
                "end": {"type": "end"},
            },
        }
    )
    mermaid = to_mermaid(skill)
    assert '    n0 -->|"a #lt; 3 and b == #quot;x#124;y#quot;"| n1' in mermaid
    assert '    n1(["end<br/>(end)"])' in mermaid


def test_a_missing_target_is_drawn_as_a_marked_placeholder() -> None:
    skill = Skill.model_validate(
        {"id": "s", "start": "a", "nodes": {"a": {"type": "message", "text": "x", "next": "gone"}}}
    )
    dot = to_dot(skill)
    assert 'x0 [label="gone\\n(missing)", shape=box, style=dashed];' in dot
    assert 'n0 -> x0 [label="next"];' in dot


def test_svg_needs_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, login: Skill) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        GraphvizMissing, match=r"install Graphviz \(`dot`\) for svg, or use --format mermaid\|dot"
    ):
        render_svg(to_dot(login))


def test_svg_is_rendered_by_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, login: Skill) -> None:
    fake = tmp_path / "dot"
    fake.write_text('#!/bin/sh\n[ "$1" = "-Tsvg" ] || exit 2\nprintf "<svg>"; cat; printf "</svg>"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")

    svg = render_svg(to_dot(login)).decode()
    assert svg.startswith('<svg>digraph "login_resume"')
    assert svg.endswith("}\n</svg>")
