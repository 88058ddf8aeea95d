"""The import arrows of ARCHITECTURE.md: domain packages never import gateway or workers."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = {
    "tenants": {"gateway", "workers", "connectors", "scanning"},
    "scanning": {"gateway", "workers", "connectors", "tenants"},
    "connectors": {"gateway", "workers", "scanning"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_packages_import_only_what_they_may() -> None:
    violations = []
    for package, banned in RULES.items():
        for path in (ROOT / package).rglob("*.py"):
            bad = imported_roots(path) & banned
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert violations == []


def test_controllers_never_touch_sqlalchemy_queries() -> None:
    offenders = []
    for path in (ROOT / "gateway").rglob("controllers.py"):
        text = path.read_text()
        if "from sqlalchemy import" in text or "session.execute" in text or "select(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
