"""Whole-skill and whole-bot rules (SKILLS.md, "Validation") on skills whose shape is already valid.

Targets that do not exist, nodes never reached, the flaws each node reports of itself (a question that keeps
no answer, a save path that does not parse), expressions that do not compile, loops that never wait for the customer (also through jumps between skills), triggers two skills
claim, ``env.NAME`` the bot does not allow, and variables read but never set.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import nodes

from rejoinder.engine.types import BUILTIN_NAMES
from rejoinder.expr import Expressions
from rejoinder.expr.environment import is_template
from rejoinder.expr.errors import ExpressionSyntaxError
from rejoinder.expr.patterns import PatternError, compile_pattern
from rejoinder.skills.cycles import shortest_cycle_through, strongly_connected
from rejoinder.skills.model import (
    Bot,
    BotConfig,
    FieldPath,
    Node,
    Skill,
    parse_duration,
)
from rejoinder.skills.problems import ERROR, WARNING, Problem, field_label

if TYPE_CHECKING:
    from rejoinder.skills.loader import SkillSource


_expressions = Expressions()
_CACHE_SIZE = 4096  # many skills repeat the same texts and conditions
_MAX_HINTS = 200  # "did you mean" lookups in one validation: each costs as much as the names it compares

Vertex = tuple[str, str]  # (skill id, node id)


def variables_set(skill: Skill) -> Iterator[tuple[str | None, FieldPath, str]]:
    """``(node id or None, where, variable)`` for every variable a skill declares or sets."""
    for name in skill.variables:
        yield None, ("variables", name), name
    for node_id, node in skill.nodes.items():
        for path, name in node.variables_set():
            yield node_id, path, name


@lru_cache(maxsize=_CACHE_SIZE)
def env_names(source: str, *, template: bool) -> frozenset[str]:
    """The ``NAME`` of every ``env.NAME`` or ``env["NAME"]`` a source reads."""
    if template and not is_template(source):
        return frozenset()
    try:
        ast = _expressions.parse(source, template=template)
    except ExpressionSyntaxError:
        return frozenset()
    names = {
        item.attr
        for item in ast.find_all(nodes.Getattr)
        if isinstance(item.node, nodes.Name) and item.node.name == "env"
    }
    for item in ast.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "env"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            names.add(item.arg.value)
    return frozenset(names)


# Words of the expression language: a variable with one of these names could never be read.
_RESERVED = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}
)


def is_variable_name(name: str) -> bool:
    """Whether an expression can read a variable called ``name``."""
    return name.isidentifier() and name not in _RESERVED


@lru_cache(maxsize=_CACHE_SIZE)
def literal_problems(source: str, *, template: bool) -> tuple[str, ...]:
    """Literal arguments that would fail at run time: token lifetimes and use counts, regular expressions."""
    if template and not is_template(source):
        return ()
    try:
        tree = _expressions.parse(source, template=template)
        calls = list(tree.find_all((nodes.Call, nodes.Filter)))
    except (ExpressionSyntaxError, RecursionError):
        return ()  # reported as a syntax error
    found: list[str] = []
    for call in calls:
        assert isinstance(call, nodes.Call | nodes.Filter)
        name = call.node.name if isinstance(call, nodes.Call) and isinstance(call.node, nodes.Name) else None
        if isinstance(call, nodes.Filter):
            name = call.name
            arguments = _literal_arguments(call, ("regex",))
        elif name == "generate_token":
            arguments = _literal_arguments(call, ("ttl", "uses"))
        else:
            arguments = _literal_arguments(call, ("text", "regex"))
        if name == "generate_token":
            found.extend(_token_problems(arguments))
        elif name == "matches" and isinstance(arguments.get("regex"), str):
            try:
                compile_pattern(arguments["regex"])
            except PatternError as exc:
                found.append(f"matches(): {exc}")
    return tuple(found)


def _literal_arguments(call: nodes.Call | nodes.Filter, names: tuple[str, ...]) -> dict[str, Any]:
    """The arguments of ``call`` written as constants, by parameter name."""
    values: dict[str, Any] = {}
    for name, argument in zip(names, call.args, strict=False):
        if isinstance(argument, nodes.Const):
            values[name] = argument.value
    for keyword in call.kwargs:
        if (
            isinstance(keyword, nodes.Keyword)
            and keyword.key in names
            and isinstance(keyword.value, nodes.Const)
        ):
            values[keyword.key] = keyword.value.value
    return values


def _token_problems(arguments: Mapping[str, Any]) -> Iterator[str]:
    if "ttl" in arguments and arguments["ttl"] is not None:
        try:
            parse_duration(arguments["ttl"])
        except ValueError as exc:
            yield f"generate_token(ttl={arguments['ttl']!r}): {exc}"
    uses = arguments.get("uses")
    if "uses" in arguments and uses is not None and (type(uses) is not int or uses < 1):
        yield f"generate_token(uses={uses!r}): uses must be a whole number of at least 1"


# ------------------------------------------------------------------------------------------ entry points


def validate_bot(
    bot: Bot, sources: Mapping[str, SkillSource] | None = None, *, unparsed: Collection[str] = ()
) -> list[Problem]:
    """All whole-bot rules for ``bot``; ``sources`` (by skill id) give problems their file and line.

    ``unparsed`` names skills that exist but failed to load: jumps to them are not reported again.
    """
    return validate_skills(bot.skills, config=bot.config, sources=sources, whole_bot=True, unparsed=unparsed)


def validate_skill(skill: Skill, source: SkillSource | None = None) -> list[Problem]:
    """The rules that hold for one skill on its own (jumps to other skills and env names are not checked)."""
    return validate_skills({skill.id: skill}, sources={skill.id: source} if source else None)


def validate_skills(
    skills: Mapping[str, Skill],
    *,
    config: BotConfig | None = None,
    sources: Mapping[str, SkillSource] | None = None,
    whole_bot: bool = False,
    unparsed: Collection[str] = (),
) -> list[Problem]:
    """Check ``skills`` together.

    ``whole_bot``: they are all of a bot's skills, so jumps and triggers are checked; ``config``: the bot's
    settings, which ``env.NAME`` is checked against.
    """
    return _Checker(skills, config, sources or {}, whole_bot, frozenset(unparsed)).run()


# ------------------------------------------------------------------------------------------ the checks


class _Checker:
    def __init__(
        self,
        skills: Mapping[str, Skill],
        config: BotConfig | None,
        sources: Mapping[str, SkillSource],
        whole_bot: bool,
        unparsed: frozenset[str],
    ) -> None:
        self.skills = skills
        self.config = config
        self.sources = sources
        self.whole_bot = whole_bot
        self.unparsed = unparsed
        self.problems: list[Problem] = []
        self._seen: set[Problem] = set()
        self._hints_left = _MAX_HINTS
        self._skill_order = {skill_id: index for index, skill_id in enumerate(skills)}
        self._entries: dict[str, list[str]] = {}  # skill id -> nodes other skills jump to
        for other in skills.values():
            for node in other.nodes.values():
                jump = node.skill_jump()
                if jump is not None and jump[0] in skills:
                    self._entries.setdefault(jump[0], []).append(jump[1] or skills[jump[0]].start)

    def run(self) -> list[Problem]:
        for skill in self.skills.values():
            self._targets(skill)
            self._jumps(skill)
            self._reachable(skill)
            self._flaws(skill)
            self._expressions(skill)
            self._read_only(skill)
            self._variable_names(skill)
        self._loops()
        if self.whole_bot:
            self._triggers()
        self._undefined_variables()
        return sorted(self.problems, key=self._position)

    def _position(self, problem: Problem) -> tuple[int, int, int]:
        """File order: by skill, then line; without lines, the order nodes are written in."""
        skill = self.skills.get(problem.skill or "")
        if skill is None:
            return len(self.skills), problem.line or 0, -1
        node_index = list(skill.nodes).index(problem.node) if problem.node in skill.nodes else -1
        return self._skill_order[skill.id], problem.line or 0, node_index

    def _report(
        self, severity: str, skill: Skill, message: str, node: str | None = None, path: FieldPath = ()
    ) -> None:
        source = self.sources.get(skill.id)
        where = ("nodes", node, *path) if node is not None else path
        problem = Problem(
            severity,
            message,
            file=source.file if source else None,
            line=source.line(where) if source else None,
            skill=skill.id,
            node=node,
        )
        if problem not in self._seen:
            self._seen.add(problem)
            self.problems.append(problem)

    # ---------------------------------------------------------------------------- graph

    def _targets(self, skill: Skill) -> None:
        if skill.start not in skill.nodes:
            message = (
                f"start: no node {skill.start!r} in this skill{self._did_you_mean(skill.start, skill.nodes)}"
            )
            self._report(ERROR, skill, message, path=("start",))
        for node_id, node in skill.nodes.items():
            for edge in node.edges():
                if edge.target not in skill.nodes:
                    hint = self._did_you_mean(edge.target, skill.nodes)
                    message = f"{field_label(edge.path)}: no node {edge.target!r} in this skill{hint}"
                    self._report(ERROR, skill, message, node_id, edge.path)

    def _jumps(self, skill: Skill) -> None:
        for node_id, node in skill.nodes.items():
            jump = node.skill_jump()
            if jump is None:
                continue
            target_id, target_node = jump
            target = self.skills.get(target_id)
            if target is None:
                if target_id in self.unparsed or not (self.whole_bot or target_id == skill.id):
                    continue
                known = ", ".join(self.skills)
                hint = self._did_you_mean(target_id, self.skills) or f" (skills: {known})"
                message = f"skill: no skill {target_id!r} in this bot{hint}"
                self._report(ERROR, skill, message, node_id, ("skill",))
            elif target_node is not None and target_node not in target.nodes:
                hint = self._did_you_mean(target_node, target.nodes)
                message = f"node: skill {target_id!r} has no node {target_node!r}{hint}"
                self._report(ERROR, skill, message, node_id, ("node",))

    def _reachable(self, skill: Skill) -> None:
        if skill.start not in skill.nodes:
            return  # already an error; every node would look unreachable
        entries = [skill.start, *self._entries.get(skill.id, [])]
        nodes_ = skill.nodes
        seen = _walk(entries, lambda node_id: [edge.target for edge in nodes_[node_id].edges()], nodes_)
        for node_id in skill.nodes:
            if node_id not in seen:
                message = f"unreachable: no path leads here from start {skill.start!r}"
                self._report(WARNING, skill, message, node_id)

    def _loops(self) -> None:
        """Cycles of nodes none of which waits for the customer (a question), also across skill jumps."""

        def successors(vertex: Vertex) -> list[Vertex]:
            skill_id, node_id = vertex
            node = self.skills[skill_id].nodes[node_id]
            found = [(skill_id, edge.target) for edge in node.edges()]
            jump = node.skill_jump()
            if jump is not None and jump[0] in self.skills:
                found.append((jump[0], jump[1] or self.skills[jump[0]].start))
            return [v for v in found if v in vertices]

        every_node = [
            (skill.id, node_id, node)
            for skill in self.skills.values()
            for node_id, node in skill.nodes.items()
        ]
        vertices = {
            (skill_id, node_id): index
            for index, (skill_id, node_id, node) in enumerate(every_node)
            if not node.waits_for_customer  # a cycle through a node that waits is fine
        }
        for component in strongly_connected(list(vertices), successors):
            first = min(component, key=vertices.__getitem__)
            if len(component) == 1 and first not in successors(first):
                continue
            cycle = shortest_cycle_through(first, set(component), successors)
            skill = self.skills[first[0]]
            shown = " → ".join(node if owner == skill.id else f"{owner}.{node}" for owner, node in cycle)
            message = f"can loop forever without waiting for the customer: {shown} (no question on the way)"
            self._report(ERROR, skill, message, first[1])

    # ---------------------------------------------------------------------------- nodes

    def _flaws(self, skill: Skill) -> None:
        for node_id, node in skill.nodes.items():
            for flaw in node.flaws():
                self._report(ERROR, skill, flaw.message, node_id, flaw.path)

    def _expressions(self, skill: Skill) -> None:
        allowed = set(self.config.env) if self.config is not None else None
        for node_id, node in skill.nodes.items():
            for expression in node.expressions():
                label = field_label(expression.path)
                error = _expressions.syntax_error(expression.source, template=expression.template)
                if error is not None:
                    self._report(ERROR, skill, f"{label}: {error.message}", node_id, expression.path)
                    continue
                for problem in literal_problems(expression.source, template=expression.template):
                    self._report(ERROR, skill, f"{label}: {problem}", node_id, expression.path)
                if allowed is None:
                    continue
                for name in sorted(env_names(expression.source, template=expression.template) - allowed):
                    listed = (
                        ", ".join(sorted(allowed))
                        if allowed
                        else "none; list it under env: in rejoinder.yaml"
                    )
                    message = f"{label}: env.{name} is not allowed by the bot's config (allowed: {listed})"
                    self._report(ERROR, skill, message, node_id, expression.path)

    def _read_only(self, skill: Skill) -> None:
        for node_id, path, name in variables_set(skill):
            if name in BUILTIN_NAMES:
                message = f"{field_label(path)}: {name!r} is built in and read-only; choose another name"
                self._report(ERROR, skill, message, node_id, path)

    def _variable_names(self, skill: Skill) -> None:
        for node_id, path, name in variables_set(skill):
            if not is_variable_name(name):
                message = (
                    f"{field_label(path)}: {name!r} is not a valid variable name "
                    "(letters, digits and '_', not starting with a digit)"
                )
                self._report(ERROR, skill, message, node_id, path)

    def _undefined_variables(self) -> None:
        known = BUILTIN_NAMES | {name for skill in self.skills.values() for *_, name in variables_set(skill)}
        candidates = sorted(known - BUILTIN_NAMES)
        hints: dict[str, str] = {}  # a name read in many places is looked up once
        for skill in self.skills.values():
            for node_id, node in skill.nodes.items():
                for path, name in _reads(node):
                    if name in known:
                        continue
                    if name not in hints:
                        hints[name] = self._did_you_mean(name, candidates) or (
                            " (declare it under 'variables:' or set it with an assign, a save_to or a save)"
                        )
                    hint = hints[name]
                    message = f"{field_label(path)}: variable {name!r} is never set{hint}"
                    self._report(WARNING, skill, message, node_id, path)

    # ---------------------------------------------------------------------------- bot

    def _triggers(self) -> None:
        events: dict[str, Skill] = {}
        default: Skill | None = None
        for skill in self.skills.values():
            for index, event in enumerate(skill.triggers.events):
                first = events.setdefault(event, skill)
                if first is not skill:
                    message = (
                        f"triggers: event {event!r} already starts skill {first.id!r}{self._where(first)}"
                    )
                    self._report(ERROR, skill, message, path=("triggers", "events", index))
            if skill.triggers.default:
                if default is None:
                    default = skill
                else:
                    message = (
                        f"triggers: skill {default.id!r}{self._where(default)} is already the default skill; "
                        "only one skill may have default: true"
                    )
                    self._report(ERROR, skill, message, path=("triggers", "default"))

    def _did_you_mean(self, name: str, candidates: Collection[str]) -> str:
        """A close name, for the first :data:`_MAX_HINTS` lookups: each compares ``name`` with every candidate."""
        if self._hints_left <= 0:
            return ""
        self._hints_left -= 1
        return _did_you_mean(name, candidates)

    def _where(self, skill: Skill) -> str:
        source = self.sources.get(skill.id)
        return f" ({source.file})" if source is not None and source.file else ""


def _reads(node: Node) -> Iterator[tuple[FieldPath, str]]:
    """``(where, variable)`` for each variable a node reads, once per place."""
    for expression in node.expressions():
        for name in sorted(_names_read(expression.source, expression.template)):
            yield expression.path, name
    yield from node.variables_read_by_name()


@lru_cache(maxsize=_CACHE_SIZE)
def _names_read(source: str, template: bool) -> frozenset[str]:
    if template and not is_template(source):
        return frozenset()
    return frozenset(_expressions.names_used(source, template=template))


def _did_you_mean(name: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _walk(
    starts: Sequence[str], successors: Callable[[str], list[str]], universe: Collection[str]
) -> set[str]:
    seen: set[str] = set()
    queue = deque(start for start in starts if start in universe)
    while queue:
        current = queue.popleft()
        if current in seen:
            continue
        seen.add(current)
        queue.extend(target for target in successors(current) if target in universe and target not in seen)
    return seen
