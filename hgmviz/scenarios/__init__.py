"""Layer 4: the shipped scenarios, and the scenario files' API in one place.

The file format (reading, validating with FILE:LINE errors, writing) is
:mod:`hgmviz.scenario_file`; replaying a scenario into a session is
:func:`hgmviz.session.session_from_scenario`.  This package holds the scenarios shipped with
hgmviz (``*.toml`` next to this file) and re-exports both.

A name or a path?  :func:`load_scenario` (and ``hgmviz explain``) treat an argument as a path
when it contains a slash or ends in ``.toml``, and as a shipped scenario's name otherwise,
whatever files the current directory holds: a file or folder called ``tour`` does not shadow
the shipped ``tour`` (write ``./tour`` to mean the file).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources

from ..scenario_file import (FORMAT, HEADER_KEYS, STATUSES, STEP_KEYS, Scenario,
                             ScenarioError, ScenarioStep, dump_scenario, format_size,
                             parse_scenario, parse_size, read_scenario, save_session,
                             session_text)
from ..session import DEFAULT_BUDGET, Session, session_from_scenario

__all__ = ["ScenarioError", "Scenario", "ScenarioStep", "ScenarioInfo", "parse_scenario",
           "read_scenario", "dump_scenario", "session_text", "save_session",
           "session_from_scenario", "list_scenarios", "load_scenario", "scenario_path",
           "is_scenario_path", "parse_size", "format_size",
           "HEADER_KEYS", "STEP_KEYS", "STATUSES", "FORMAT"]


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    title: str
    path: str


def is_scenario_path(arg) -> bool:
    """Whether ``arg`` names a file (it contains a slash or ends in ``.toml``) rather than a
    shipped scenario; what the current directory holds does not matter."""
    arg = os.fspath(arg)
    return "/" in arg or os.sep in arg or bool(os.altsep and os.altsep in arg) or \
        arg.endswith(".toml")


def _shipped():
    return resources.files(__name__)


def list_scenarios() -> list:
    """The scenarios shipped with hgmviz, as :class:`ScenarioInfo` (name, title, path)."""
    out = []
    for entry in sorted(_shipped().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            out.append(ScenarioInfo(entry.name[:-5], data.get("title", ""), str(entry)))
    return out


def scenario_path(name: str) -> str:
    """The path of the shipped scenario ``name`` (a name from :func:`list_scenarios`)."""
    names = [i.name for i in list_scenarios()]
    if name not in names:
        raise ValueError("no shipped scenario %r; shipped: %s" % (name, ", ".join(names)))
    return str(_shipped().joinpath(name + ".toml"))


def load_scenario(name: str, snapshot_budget: int = DEFAULT_BUDGET) -> Session:
    """A session replaying the shipped scenario ``name`` (or a path to a scenario file: see
    :func:`is_scenario_path`)."""
    path = name if is_scenario_path(name) else scenario_path(name)
    return session_from_scenario(read_scenario(path), snapshot_budget)
