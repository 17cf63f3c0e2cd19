"""The installed package holds every subpackage of the tree.

``[tool.setuptools] packages`` is a list written by hand (agents/, tables/ and web/ are
mapped into phoenix_stream): ``phoenix_stream.tools.scenarios`` was once missing from it,
so a plain ``pip install .`` (the Dockerfile's) had no ``simulate --scenario`` and mypy,
which checks such a build, never saw the scenarios.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(config["tool"]["setuptools"]["packages"])


def _in_tree() -> set[str]:
    found = set()
    for init in (ROOT / "phoenix_stream").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    for folder, name in (("agents", "agents"), ("tables", "tables"), ("web", "web")):
        if (ROOT / folder / "__init__.py").exists():
            found.add(f"phoenix_stream.{name}")
    return found


def test_every_package_of_the_tree_is_installed() -> None:
    assert _in_tree() - _declared() == set()


def test_nothing_declared_is_missing_from_the_tree() -> None:
    assert _declared() - _in_tree() == set()
