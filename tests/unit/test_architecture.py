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


# Outbound HTTP: every client the gateway opens to a remote service is built by connectors.outbound (address
# rule at connect time, no redirects). A client built any other way would reopen the SSRF it closes.
_BUILT_ONLY_BY_OUTBOUND = {
    ("httpx", "AsyncClient"),
    ("httpx", "Client"),
    ("httpx", "AsyncHTTPTransport"),
    ("httpx", "HTTPTransport"),
    ("requests", "Session"),
    ("aiohttp", "ClientSession"),
    ("aiohttp", "TCPConnector"),
    ("urllib.request", "urlopen"),
    *(("httpx", verb) for verb in ("get", "post", "put", "delete", "request", "stream")),
    *(("requests", verb) for verb in ("get", "post", "put", "delete", "request", "head")),
}
# SDK entry points that open connections: each must be handed the outbound transport (or session).
_NEEDS_TRANSPORT = {
    "AsyncOAuth2Client": "transport",
    "OAuth2Client": "transport",
    "ContainerClient": "transport",
    "BlobServiceClient": "transport",
    "BlobClient": "transport",
    "ClientSecretCredential": "transport",
    "ConfidentialClientApplication": "http_client",
    "with_transport": "session",
}


def _called(node: ast.Call) -> tuple[str, str]:
    func = node.func
    if isinstance(func, ast.Attribute):
        return ast.unparse(func.value), func.attr
    if isinstance(func, ast.Name):
        return "", func.id
    return "", ""


# The gateway's own infrastructure, configured by the operator like PostgreSQL and Redis: not a destination a
# tenant or a remote answer can choose.
_OWN_INFRASTRUCTURE = {"gateway/uploads/s3_quarantine.py"}


def test_outbound_http_clients_are_built_only_by_connectors_outbound() -> None:
    offenders = []
    for package in ("connectors", "gateway", "workers", "tenants", "scanning"):
        for path in (ROOT / package).rglob("*.py"):
            if path.is_relative_to(ROOT / "connectors" / "outbound"):
                continue
            text = path.read_text()
            where = str(path.relative_to(ROOT))
            if where in _OWN_INFRASTRUCTURE:
                continue
            if any(f'.client("{service}"' in text for service in ("s3", "sts")) and ".attach(" not in text:
                offenders.append(f"{where}: a boto3 client without an outbound sender attached")
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, ast.Call):
                    continue
                owner, name = _called(node)
                given = {k.arg for k in node.keywords}
                # An httpx client is fine on an outbound transport (Instagram keeps its transport at hand).
                wrapped = name == "AsyncClient" and "transport" in given
                if (owner, name) in _BUILT_ONLY_BY_OUTBOUND and not wrapped:
                    offenders.append(f"{where}:{node.lineno} {owner}.{name}")
                needed = _NEEDS_TRANSPORT.get(name)
                if needed and needed not in given:
                    offenders.append(f"{where}:{node.lineno} {name} without {needed}=")
    assert offenders == []
