"""The layering rule, read from the source (``docs/architecture.md``):

- ``training/`` is plain PyTorch: it imports no Django and none of the Django apps;
- ``annotator/`` is the lower Django app: it imports nothing of ``inference/`` (which calls it, and
  answers the few things it needs through ``annotator.hooks``).

Every import statement counts, at module level or inside a function (a deferred import is still a
dependency), found by parsing each file, not by grepping text.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RULES = {
    "training": ("django", "rest_framework", "celery", "annotator", "inference", "config"),
    "annotator": ("inference",),
}


def imported_modules(path: Path, *, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, module) for every import in a file; relative imports resolved against its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(RULES))
def test_each_package_imports_only_the_layers_below_it(package):
    assert violations(package, RULES[package]) == []


def test_the_scan_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The checker itself: a deferred import, a relative one and a plain one are all found."""
    (tmp_path / "annotator" / "services").mkdir(parents=True)
    probe = tmp_path / "annotator" / "services" / "probe.py"
    probe.write_text("from .. import models\nfrom .events import x\n\ndef f():\n    from inference.models import Prediction\n    import django.db\n")
    modules = [module for _, module in imported_modules(probe, root=tmp_path)]
    assert modules == ["annotator", "annotator.services.events", "inference.models", "django.db"]
