"""A skill's graph as SVG: every node drawn and linked, text escaped, nothing a strict CSP would block."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from rejoinder.skills import parse_skill
from rejoinder.skills.model import Skill
from rejoinder.skills.svg import MAX_DRAWN_NODES, TooLargeToDraw, skill_svg

SVG = "{http://www.w3.org/2000/svg}"
LOOP = """\
id: loop
start: ask
nodes:
  ask:
    type: question
    text: Again?
    choices:
      - {label: "Yes <&> \\"sure\\"", value: "y", next: ask}
      - {label: "No", value: "n", next: done}
    save_to: answer
  done: {type: jump, skill: other}
"""


def skill_of(text: str) -> Skill:
    skill, problems = parse_skill(text)
    assert skill is not None, problems
    return skill


def test_every_node_is_a_link_and_the_drawing_is_well_formed_without_style() -> None:
    drawn = skill_svg(skill_of(LOOP), lambda node_id: f"/source#{node_id}", name="t")
    root = ET.fromstring(drawn)
    links = {link.get("href") for link in root.iter(f"{SVG}a")}
    assert links == {"/source#ask", "/source#done"}
    assert all("style" not in element.attrib for element in root.iter())
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert 'Yes <&> "sure"' in texts  # escaped in the markup, whole once parsed
    assert "other" in texts  # the skill it jumps to, drawn as a placeholder
    # The choice back to the same node is drawn too: one path per edge, plus the start's.
    assert len(root.findall(f"{SVG}path")) == 4


def test_nodes_without_a_link_are_drawn_unlinked() -> None:
    root = ET.fromstring(skill_svg(skill_of(LOOP), lambda node_id: None))
    assert list(root.iter(f"{SVG}a")) == []
    assert len([group for group in root.iter(f"{SVG}g") if group.get("class") == "graph-node"]) == 3


def test_a_skill_too_large_to_draw_is_refused() -> None:
    nodes = "".join(f"  n{i}: {{type: message, text: hi, next: n{i + 1}}}\n" for i in range(MAX_DRAWN_NODES))
    text = f"id: big\nstart: n0\nnodes:\n{nodes}  n{MAX_DRAWN_NODES}: {{type: end}}\n"
    with pytest.raises(TooLargeToDraw):
        skill_svg(skill_of(text))
