"""Skills: the conversation-flow language, its loader with line numbers, its validator and graph export."""

from rejoinder.skills.graph import GraphvizMissing, node_edges, render_svg, to_dot, to_mermaid
from rejoinder.skills.loader import (
    CONFIG_FILE,
    CheckReport,
    SkillSource,
    bot_version,
    check_bot,
    check_paths,
    check_report,
    load_bot,
    parse_skill,
    read_skill,
    skill_files,
    with_skill,
)
from rejoinder.skills.model import Bot, BotConfig, Edge, Node, Skill
from rejoinder.skills.problems import ERROR, WARNING, BotLoadError, Problem
from rejoinder.skills.validate import validate_bot, validate_skill, validate_skills

__all__ = [
    "CONFIG_FILE",
    "ERROR",
    "WARNING",
    "Bot",
    "BotConfig",
    "BotLoadError",
    "CheckReport",
    "Edge",
    "GraphvizMissing",
    "Node",
    "Problem",
    "Skill",
    "SkillSource",
    "bot_version",
    "check_bot",
    "check_paths",
    "check_report",
    "load_bot",
    "node_edges",
    "parse_skill",
    "read_skill",
    "render_svg",
    "skill_files",
    "to_dot",
    "to_mermaid",
    "validate_bot",
    "validate_skill",
    "validate_skills",
    "with_skill",
]
