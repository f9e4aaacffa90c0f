"""A skill or a whole bot as a graph: the edges its nodes lead along, drawn as Mermaid, Graphviz dot or SVG."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from rejoinder.skills.model import Edge, Node, Skill


def node_edges(node: Node) -> list[Edge]:
    """Every edge out of ``node`` within its skill, in the order the node lists them."""
    return node.edges()


# ------------------------------------------------------------------------------------------ drawing


class GraphvizMissing(RuntimeError):
    """The ``dot`` program is not installed."""


def to_mermaid(skill: Skill) -> str:
    """A Mermaid flowchart of ``skill``."""
    names = _Names({skill.id: skill}, whole_bot=False)
    lines = ["flowchart TD", *_mermaid_skill(skill, names, "    ")]
    return _mermaid_finish(lines, names, _all_edges(skill, names))


def bot_to_mermaid(skills: Mapping[str, Skill]) -> str:
    """A Mermaid flowchart of a whole bot: each skill a subgraph, a jump to another skill an edge to its node."""
    names = _Names(skills, whole_bot=True)
    lines = ["flowchart TD"]
    edges: list[_DrawnEdge] = []
    for skill in skills.values():
        lines.append(f'    subgraph {names.group(skill.id)}["{_mermaid_text(_skill_title(skill))}"]')
        lines.extend(_mermaid_skill(skill, names, "        "))
        lines.append("    end")
        edges.extend(_all_edges(skill, names))
    return _mermaid_finish(lines, names, edges)


def to_dot(skill: Skill) -> str:
    """A Graphviz ``digraph`` of ``skill``."""
    names = _Names({skill.id: skill}, whole_bot=False)
    lines = [f"digraph {_dot_quote(skill.id)} {{", *_DOT_DEFAULTS, *_dot_skill(skill, names, "    ")]
    return _dot_finish(lines, names, _all_edges(skill, names))


def bot_to_dot(skills: Mapping[str, Skill], name: str = "bot") -> str:
    """A Graphviz ``digraph`` of a whole bot: each skill a cluster, a jump to another skill an edge to its node."""
    names = _Names(skills, whole_bot=True)
    lines = [f"digraph {_dot_quote(name)} {{", *_DOT_DEFAULTS, "    compound=true;"]
    edges: list[_DrawnEdge] = []
    for skill in skills.values():
        lines.append(f"    subgraph cluster_{names.group(skill.id)} {{")
        lines.append(f'        label={_dot_quote(_skill_title(skill))}; style=rounded; color="#999999";')
        lines.extend(_dot_skill(skill, names, "        "))
        lines.append("    }")
        edges.extend(_all_edges(skill, names))
    return _dot_finish(lines, names, edges)


# (source, target, label, dashed)
_DrawnEdge = tuple[str, str, str, bool]
_DOT_DEFAULTS = [
    '    node [shape=box, fontname="Helvetica"];',
    '    edge [fontname="Helvetica", fontsize=10];',
]


def _mermaid_skill(skill: Skill, names: _Names, indent: str) -> list[str]:
    entry = names.entry(skill.id)
    lines = [
        f'{indent}{entry}(("{_mermaid_text(names.entry_label(skill))}")) --> {names.node(skill.id, skill.start)}'
    ]
    for node_id, node in skill.nodes.items():
        label = _mermaid_text(f"{node_id}\n({node.type})")
        opening, closing = _MERMAID_SHAPES.get(node.type, ("[", "]"))
        lines.append(f'{indent}{names.node(skill.id, node_id)}{opening}"{label}"{closing}')
    return lines


def _mermaid_finish(lines: list[str], names: _Names, edges: list[_DrawnEdge]) -> str:
    for name, label in names.extra_nodes():
        lines.append(f'    {name}[["{_mermaid_text(label)}"]]')
    for source, target, label, dashed in edges:
        arrow = "-.->" if dashed else "-->"
        lines.append(f'    {source} {arrow}|"{_mermaid_text(label)}"| {target}')
    return "\n".join(lines) + "\n"


def _dot_skill(skill: Skill, names: _Names, indent: str) -> list[str]:
    entry = names.entry(skill.id)
    label = names.entry_label(skill)
    lines = [
        f'{indent}{entry} [shape=point, label=""];'
        if label == _START
        else f"{indent}{entry} [shape=plaintext, label={_dot_quote(label)}];",
        f"{indent}{entry} -> {names.node(skill.id, skill.start)};",
    ]
    for node_id, node in skill.nodes.items():
        shape = _DOT_SHAPES.get(node.type, "box")
        text = _dot_quote(f"{node_id}\n({node.type})")
        lines.append(f"{indent}{names.node(skill.id, node_id)} [label={text}, shape={shape}];")
    return lines


def _dot_finish(lines: list[str], names: _Names, edges: list[_DrawnEdge]) -> str:
    for name, label in names.extra_nodes():
        lines.append(f"    {name} [label={_dot_quote(label)}, shape=box, style=dashed];")
    for source, target, label, dashed in edges:
        style = ", style=dashed" if dashed else ""
        lines.append(f"    {source} -> {target} [label={_dot_quote(label)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _skill_title(skill: Skill) -> str:
    return f"{skill.id}: {skill.name}" if skill.name and skill.name != skill.id else skill.id


def render_svg(dot_text: str, *, timeout: float = 30) -> bytes:
    """Render dot text to SVG with Graphviz. Raises :class:`GraphvizMissing` when ``dot`` is not installed."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing("install Graphviz (`dot`) for svg, or use --format mermaid|dot")
    try:
        result = subprocess.run(
            [program, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"dot failed: {exc}") from exc
    if result.returncode != 0:
        raise RuntimeError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


_MERMAID_SHAPES = {
    "question": ("[/", "/]"),
    "condition": ("{", "}"),
    "end": ("([", "])"),
    "jump": ("[[", "]]"),
}
_DOT_SHAPES = {"question": "parallelogram", "condition": "diamond", "end": "oval", "jump": "cds"}


_START = "start"


class _Names:
    """Drawing ids (``n0``, ``n1``…) for nodes, so any node id, even ``end``, is safe in Mermaid and dot.

    In a whole bot's drawing each skill has a prefix (``s0n3``), and a jump to another skill of the bot leads to
    that skill's node; otherwise it leads to a placeholder naming the skill.
    """

    def __init__(self, skills: Mapping[str, Skill], *, whole_bot: bool) -> None:
        self.skills = skills
        self.whole_bot = whole_bot
        self._groups = {skill_id: f"s{index}" if whole_bot else "" for index, skill_id in enumerate(skills)}
        self._ids = {
            (skill_id, node_id): f"{self._groups[skill_id]}n{index}"
            for skill_id, skill in skills.items()
            for index, node_id in enumerate(skill.nodes)
        }
        self._extra: dict[str, tuple[str, str]] = {}

    def group(self, skill_id: str) -> str:
        return self._groups[skill_id]

    def entry(self, skill_id: str) -> str:
        return f"{self._groups[skill_id]}entry"

    def entry_label(self, skill: Skill) -> str:
        """``start``; in a whole bot, what starts the skill (its events, and whether it is the default)."""
        if not self.whole_bot:
            return _START
        starts = [*(f"event {event}" for event in skill.triggers.events)]
        if skill.triggers.default:
            starts.append("default")
        return ", ".join(starts) or _START

    def node(self, skill_id: str, node_id: str) -> str:
        """A node of a skill, or a marked placeholder when the skill has no node with that id."""
        found = self._ids.get((skill_id, node_id))
        if found is not None:
            return found
        where = f"{skill_id}.{node_id}" if self.whole_bot else node_id
        return self._add(f"missing:{skill_id}.{node_id}", f"{where}\n(missing)")

    def jump(self, skill_id: str, node_id: str | None) -> str:
        """Where a jump to another skill leads."""
        target = self.skills.get(skill_id) if self.whole_bot else None
        if target is not None:
            return self.node(skill_id, node_id or target.start)
        where = f"{skill_id}.{node_id}" if node_id else skill_id
        suffix = "\n(missing)" if self.whole_bot else ""
        return self._add(f"skill:{where}", f"skill {where}{suffix}")

    def extra_nodes(self) -> list[tuple[str, str]]:
        return list(self._extra.values())

    def _add(self, key: str, label: str) -> str:
        if key not in self._extra:
            self._extra[key] = (f"x{len(self._extra)}", label)
        return self._extra[key][0]


def _all_edges(skill: Skill, names: _Names) -> list[_DrawnEdge]:
    edges: list[_DrawnEdge] = []
    for node_id, node in skill.nodes.items():
        source = names.node(skill.id, node_id)
        for edge in node_edges(node):
            dashed = edge.field in ("on_error", "on_invalid")
            edges.append((source, names.node(skill.id, edge.target), edge.label, dashed))
        jump = node.skill_jump()
        if jump is not None:
            edges.append((source, names.jump(*jump), "skill", True))
    return edges


def _mermaid_text(text: str) -> str:
    replacements = {"&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;", "\n": "<br/>"}
    return "".join(replacements.get(char, char) for char in text)


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
