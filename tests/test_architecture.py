"""DESIGN.md's import direction, checked on the source: arrows point one way.

``flows → tasks → providers → optiinfra`` and ``flows → agents → optiinfra``; nothing in
``optiinfra/`` imports the folders below it except the CLI, no agent imports a
provider, and only the sandbox actuator and the CLI import ``optiinfra.sandbox``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("optiinfra", "providers", "tasks", "agents", "flows", "deployments")

#: package → top-level packages it must never import.
FORBIDDEN: dict[str, set[str]] = {
    "optiinfra": {"providers", "tasks", "agents", "flows", "deployments"},
    "providers": {"tasks", "agents", "flows", "deployments"},
    "tasks": {"agents", "flows", "deployments"},
    "agents": {"providers", "tasks", "flows", "deployments"},
    "flows": {"providers", "deployments"},
    "deployments": {"providers", "tasks", "agents"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    offences = []
    for path in _sources(package):
        if package == "optiinfra" and "cli" in path.relative_to(ROOT / package).parts:
            continue  # the CLI is where the layers are wired together
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "\n".join(offences)


def test_the_sandbox_is_imported_only_by_its_actuator_and_the_cli() -> None:
    offences = []
    for package in TOP:
        for path in _sources(package):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] in {("optiinfra", "sandbox"), ("optiinfra", "cli")}:
                continue
            if rel == Path("providers/sandbox/actuator.py"):
                continue
            if any(n.startswith("optiinfra.sandbox") for n in _imports(path)):
                offences.append(str(rel))
    assert not offences


def test_every_top_level_folder_of_the_design_exists() -> None:
    for folder in (*TOP, "sql", "benchmarks", "tests"):
        assert (ROOT / folder).is_dir(), folder
