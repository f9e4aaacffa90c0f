"""A skill as a graph: the edges its nodes lead along, drawn as Mermaid, Graphviz dot or SVG."""

from __future__ import annotations

import shutil
import subprocess

from rejoinder.skills.model import Edge, Node, Skill


def node_edges(node: Node) -> list[Edge]:
    """Every edge out of ``node`` within its skill, in the order the node lists them."""
    return node.edges()


# ------------------------------------------------------------------------------------------ drawing


class GraphvizMissing(RuntimeError):
    """The ``dot`` program is not installed."""


def to_mermaid(skill: Skill) -> str:
    """A Mermaid flowchart of ``skill``."""
    names = _Names(skill)
    lines = ["flowchart TD", f'    {names.start}(("start")) --> {names.node(skill.start)}']
    for node_id, node in skill.nodes.items():
        label = _mermaid_text(f"{node_id}\n({node.type})")
        opening, closing = _MERMAID_SHAPES.get(node.type, ("[", "]"))
        lines.append(f'    {names.node(node_id)}{opening}"{label}"{closing}')
    edges = _all_edges(skill, names)  # may add placeholder nodes: list them after
    for name, label in names.extra_nodes():
        lines.append(f'    {name}[["{_mermaid_text(label)}"]]')
    for source, target, label, dashed in edges:
        arrow = "-.->" if dashed else "-->"
        lines.append(f'    {source} {arrow}|"{_mermaid_text(label)}"| {target}')
    return "\n".join(lines) + "\n"


def to_dot(skill: Skill) -> str:
    """A Graphviz ``digraph`` of ``skill``."""
    names = _Names(skill)
    lines = [
        f"digraph {_dot_quote(skill.id)} {{",
        '    node [shape=box, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        f'    {names.start} [shape=point, label=""];',
        f"    {names.start} -> {names.node(skill.start)};",
    ]
    for node_id, node in skill.nodes.items():
        shape = _DOT_SHAPES.get(node.type, "box")
        label = _dot_quote(f"{node_id}\n({node.type})")
        lines.append(f"    {names.node(node_id)} [label={label}, shape={shape}];")
    edges = _all_edges(skill, names)  # may add placeholder nodes: list them after
    for name, label in names.extra_nodes():
        lines.append(f"    {name} [label={_dot_quote(label)}, shape=box, style=dashed];")
    for source, target, label, dashed in edges:
        style = ", style=dashed" if dashed else ""
        lines.append(f"    {source} -> {target} [label={_dot_quote(label)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


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


class _Names:
    """Drawing ids (``n0``, ``n1``…) for nodes, so any node id, even ``end``, is safe in Mermaid and dot."""

    start = "entry"

    def __init__(self, skill: Skill) -> None:
        self._ids = {node_id: f"n{index}" for index, node_id in enumerate(skill.nodes)}
        self._extra: dict[str, tuple[str, str]] = {}

    def node(self, node_id: str) -> str:
        """A node of the skill, or a marked placeholder when no node has that id."""
        return self._ids.get(node_id) or self._add(f"missing:{node_id}", f"{node_id}\n(missing)")

    def skill(self, skill_id: str, node_id: str | None) -> str:
        where = f"{skill_id}.{node_id}" if node_id else skill_id
        return self._add(f"skill:{where}", f"skill {where}")

    def extra_nodes(self) -> list[tuple[str, str]]:
        return list(self._extra.values())

    def _add(self, key: str, label: str) -> str:
        if key not in self._extra:
            self._extra[key] = (f"x{len(self._extra)}", label)
        return self._extra[key][0]


def _all_edges(skill: Skill, names: _Names) -> list[tuple[str, str, str, bool]]:
    edges: list[tuple[str, str, str, bool]] = []
    for node_id, node in skill.nodes.items():
        source = names.node(node_id)
        for edge in node_edges(node):
            dashed = edge.field in ("on_error", "on_invalid")
            edges.append((source, names.node(edge.target), edge.label, dashed))
        jump = node.skill_jump()
        if jump is not None:
            edges.append((source, names.skill(*jump), "skill", True))
    return edges


def _mermaid_text(text: str) -> str:
    replacements = {"&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;", "\n": "<br/>"}
    return "".join(replacements.get(char, char) for char in text)


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
