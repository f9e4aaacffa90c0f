"""A skill's graph drawn as SVG in Python (no Graphviz): nodes in layers from the start, each a link.

The layout is a plain layered one: a node's layer is its distance from the start (breadth first), nodes in a
layer are ordered by the mean position of their neighbours (a few sweeps), and an edge back up the graph is drawn
as a curve out to the side. The SVG uses presentation attributes only (no ``style``), so it may be put inline in a
page under a strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from rejoinder.skills.graph import node_edges
from rejoinder.skills.model import Skill

MAX_DRAWN_NODES = 300  # a larger skill is listed, not drawn: the layout and the picture grow past use
_LABEL_CHARS = 28
_EDGE_LABEL_CHARS = 20
_CHAR_WIDTH = 7.2  # of a 12 px system font, near enough to size a box
_NODE_HEIGHT = 46
_LAYER_GAP = 64
_NODE_GAP = 28
_MARGIN = 24
_SWEEPS = 4

# Fill and outline by node type (presentation attributes, readable in print and on a dark screen's page).
_COLOURS = {
    "message": ("#eef3fd", "#2354c4"),
    "question": ("#fff6e0", "#a66a00"),
    "assign": ("#f1f1f4", "#5a6273"),
    "integrate": ("#eaf6ef", "#1e7a3c"),
    "condition": ("#f6eefc", "#7a3bb0"),
    "jump": ("#e9f5f8", "#17707f"),
    "end": ("#fdf0f0", "#b4232a"),
}
_PLACEHOLDER = ("#ffffff", "#8a93a6")


class TooLargeToDraw(ValueError):
    """The skill has more nodes than :data:`MAX_DRAWN_NODES`."""


@dataclass
class _Box:
    key: str
    title: str
    subtitle: str
    node_id: str | None  # None for the start marker and placeholders
    kind: str
    layer: int = 0
    order: float = 0.0
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    out: list[str] = field(default_factory=list)
    into: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Line:
    source: str
    target: str
    label: str
    dashed: bool


def skill_svg(skill: Skill, link: Callable[[str], str | None] | None = None, *, name: str = "graph") -> str:
    """``skill`` as an ``<svg>`` element. ``link(node_id)`` gives the URL each node links to (None: no link);
    ``name`` prefixes the element ids, so several drawings may share a page. Raises :class:`TooLargeToDraw`."""
    if len(skill.nodes) > MAX_DRAWN_NODES:
        raise TooLargeToDraw(f"the skill has {len(skill.nodes)} nodes; at most {MAX_DRAWN_NODES} are drawn")
    boxes, lines = _graph(skill)
    _assign_layers(boxes)
    _order_layers(boxes)
    width, height = _place(boxes)
    return _draw(skill, boxes, lines, width, height, link, name)


def _graph(skill: Skill) -> tuple[dict[str, _Box], list[_Line]]:
    boxes: dict[str, _Box] = {"start": _Box("start", "start", "", None, "start")}
    for node_id, node in skill.nodes.items():
        boxes[f"node:{node_id}"] = _Box(f"node:{node_id}", node_id, node.type, node_id, node.type)
    lines = [_Line("start", f"node:{skill.start}", "", False)]

    def target(key: str, title: str, subtitle: str) -> str:
        if key not in boxes:
            boxes[key] = _Box(key, title, subtitle, None, "placeholder")
        return key

    if f"node:{skill.start}" not in boxes:
        target(f"node:{skill.start}", skill.start, "missing")
    for node_id, node in skill.nodes.items():
        source = f"node:{node_id}"
        for edge in node_edges(node):
            key = f"node:{edge.target}"
            if key not in boxes:
                target(key, edge.target, "missing")
            lines.append(_Line(source, key, edge.label, edge.field in ("on_error", "on_invalid")))
        jump = node.skill_jump()
        if jump is not None:
            where = f"{jump[0]}.{jump[1]}" if jump[1] else jump[0]
            lines.append(_Line(source, target(f"skill:{where}", where, "skill"), "skill", True))
    for line in lines:
        boxes[line.source].out.append(line.target)
        boxes[line.target].into.append(line.source)
    return boxes, lines


def _assign_layers(boxes: dict[str, _Box]) -> None:
    """Breadth first from the start; what it never reaches is laid out after, from the first such node."""
    placed: set[str] = set()
    next_layer = 0
    for root in boxes:
        if root in placed:
            continue
        boxes[root].layer = next_layer
        placed.add(root)
        queue = [root]
        while queue:
            key = queue.pop(0)
            for following in boxes[key].out:
                if following not in placed:
                    placed.add(following)
                    boxes[following].layer = boxes[key].layer + 1
                    queue.append(following)
        next_layer = max(box.layer for box in boxes.values() if box.key in placed) + 1


def _layers(boxes: dict[str, _Box]) -> list[list[_Box]]:
    layers: list[list[_Box]] = [[] for _ in range(max(box.layer for box in boxes.values()) + 1)]
    for box in boxes.values():
        layers[box.layer].append(box)
    for layer in layers:
        layer.sort(key=lambda box: box.order)
    return layers


def _order_layers(boxes: dict[str, _Box]) -> None:
    """Order each layer by the mean position of its neighbours in the layer before (then after), a few times."""
    for index, box in enumerate(boxes.values()):
        box.order = index
    for sweep in range(_SWEEPS):
        layers = _layers(boxes)
        downward = sweep % 2 == 0
        for layer in layers if downward else reversed(layers):
            for box in layer:
                near = [boxes[key] for key in (box.into if downward else box.out)]
                near = [other for other in near if other.layer != box.layer]
                if near:
                    box.order = sum(other.order for other in near) / len(near)
            for position, box in enumerate(sorted(layer, key=lambda box: box.order)):
                box.order = position


def _place(boxes: dict[str, _Box]) -> tuple[float, float]:
    layers = _layers(boxes)
    for box in boxes.values():
        text = max(len(_cut(box.title, _LABEL_CHARS)), len(box.subtitle) + 2)
        box.width = 36 if box.kind == "start" else max(96.0, text * _CHAR_WIDTH + 24)
    widths = [sum(box.width for box in layer) + _NODE_GAP * (len(layer) - 1) for layer in layers]
    width = max(widths) + 2 * _MARGIN
    for index, layer in enumerate(layers):
        x = _MARGIN + (max(widths) - widths[index]) / 2
        for box in layer:
            box.x = x
            box.y = _MARGIN + index * (_NODE_HEIGHT + _LAYER_GAP)
            x += box.width + _NODE_GAP
    height = _MARGIN * 2 + len(layers) * _NODE_HEIGHT + (len(layers) - 1) * _LAYER_GAP
    return width, height


def _draw(
    skill: Skill,
    boxes: dict[str, _Box],
    lines: list[_Line],
    width: float,
    height: float,
    link: Callable[[str], str | None] | None,
    name: str,
) -> str:
    arrow = f"{name}-arrow"
    layers = _layers(boxes)
    edges: list[_Route] = []
    back = 0  # edges going back up, each given a channel of its own further right
    for line in lines:
        source, target = boxes[line.source], boxes[line.target]
        edges.append(_edge(source, target, line, layers, back))
        back += target.layer <= source.layer
    width = max([width, *(edge.right + _MARGIN for edge in edges)])
    title = f"The graph of skill {skill.id}: {len(skill.nodes)} nodes"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="skill-graph" role="group" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label={quoteattr(title)} font-family="system-ui, sans-serif" font-size="12">',
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5a6273"/></marker></defs>',
    ]
    parts.extend(edge.svg(arrow) for edge in edges)
    parts.extend(_node(box, link) for box in boxes.values())
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass(frozen=True)
class _Route:
    """An edge's path, and where its label sits."""

    path: str
    label: str
    dashed: bool
    label_x: float
    label_y: float
    right: float  # the furthest right it reaches, label included

    def svg(self, arrow: str) -> str:
        dash = ' stroke-dasharray="5 4"' if self.dashed else ""
        drawn = [
            f'<path d="{self.path}" fill="none" stroke="#5a6273" stroke-width="1.4" stroke-linejoin="round"'
            f'{dash} marker-end="url(#{arrow})"/>'
        ]
        if self.label:
            half = _label_half_width(self.label)
            drawn.append(
                f'<rect x="{self.label_x - half:.1f}" y="{self.label_y - 9:.1f}" width="{2 * half:.1f}" '
                'height="16" rx="3" fill="#ffffff" fill-opacity="0.9"/>'
                f'<text x="{self.label_x:.1f}" y="{self.label_y + 3:.1f}" text-anchor="middle" font-size="11" '
                f'fill="#1d2330">{escape(self.label)}</text>'
            )
        return "".join(drawn)


def _edge(source: _Box, target: _Box, line: _Line, layers: list[list[_Box]], channel: int) -> _Route:
    label = _cut(line.label, _EDGE_LABEL_CHARS)
    if target.layer > source.layer:
        x1, y1 = source.x + source.width / 2, source.y + _NODE_HEIGHT
        x2, y2 = target.x + target.width / 2, target.y
        bend = (y2 - y1) / 2
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
        # The label nearer the target (where edges fanning out of one node have parted): the curve at t = 0.62.
        t = 0.62
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        x = (a + b) * x1 + (c + d) * x2
        y = a * y1 + b * (y1 + bend) + c * (y2 - bend) + d * y2
        return _Route(path, label, line.dashed, x, y, max(x1, x2, x + _label_half_width(label)))
    # Back up the graph or along a layer: down into the gap under the source, right past every node between,
    # up into the gap over the target, and down into it (off centre, apart from the edges coming from above).
    between = [box for layer in layers[target.layer : source.layer + 1] for box in layer]
    reach = max(box.x + box.width for box in between) + 24 + 10 * channel
    x1, y1 = source.x + source.width * 0.8, source.y + _NODE_HEIGHT
    x2, y2 = target.x + target.width * 0.8, target.y
    below, above = y1 + _LAYER_GAP / 3, y2 - _LAYER_GAP / 3
    path = (
        f"M{x1:.1f},{y1:.1f} L{x1:.1f},{below:.1f} L{reach:.1f},{below:.1f} L{reach:.1f},{above:.1f} "
        f"L{x2:.1f},{above:.1f} L{x2:.1f},{y2:.1f}"
    )
    y = (below + above) / 2
    return _Route(path, label, line.dashed, reach, y, reach + _label_half_width(label))


def _label_half_width(label: str) -> float:
    return len(label) * 6.2 / 2 + 4 if label else 0.0


def _node(box: _Box, link: Callable[[str], str | None] | None) -> str:
    if box.kind == "start":
        cx, cy = box.x + box.width / 2, box.y + _NODE_HEIGHT / 2
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="9" fill="#1d2330"><title>start</title></circle>'
    fill, stroke = _COLOURS.get(box.kind, _PLACEHOLDER)
    dash = ' stroke-dasharray="4 3"' if box.kind == "placeholder" else ""
    middle = box.x + box.width / 2
    shape = (
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{_NODE_HEIGHT}" '
        f'rx="{18 if box.kind == "end" else 6}" fill="{fill}" stroke="{stroke}" stroke-width="1.6"{dash}/>'
        f'<text x="{middle:.1f}" y="{box.y + 19:.1f}" text-anchor="middle" font-weight="600" '
        f'fill="#1d2330">{escape(_cut(box.title, _LABEL_CHARS))}</text>'
        f'<text x="{middle:.1f}" y="{box.y + 35:.1f}" text-anchor="middle" font-size="11" '
        f'fill="#5a6273">({escape(box.subtitle)})</text>'
    )
    described = f"{box.subtitle} node {box.title}" if box.node_id else f"{box.title} ({box.subtitle})"
    url = link(box.node_id) if link is not None and box.node_id is not None else None
    if url is None:
        return f'<g class="graph-node"><title>{escape(described)}</title>{shape}</g>'
    return (
        f'<a class="graph-node" href={quoteattr(url)} aria-label={quoteattr(f"{described}: show its source")}>'
        f"<title>{escape(described)}</title>{shape}</a>"
    )


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
