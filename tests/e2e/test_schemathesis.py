"""Schemathesis against the running gateway's own OpenAPI document: no 5xx, no response off its schema."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tenants.permissions import Permission
from tests.conftest import OPERATOR_TOKEN
from tests.e2e.conftest import make_tenant

MAX_EXAMPLES = os.environ.get("FILEGATE_SCHEMATHESIS_EXAMPLES", "25")


def test_openapi_fuzzing_finds_no_server_error(live_server, tmp_path: Path) -> None:
    t = make_tenant(live_server)
    # An admin API key with every scope: unlike a JWT, fuzzing /v1/auth/logout cannot revoke it.
    key = httpx.post(
        f"{live_server.url}/v1/api-keys",
        json={"name": "fuzz", "scopes": [p.value for p in Permission]},
        headers={"Authorization": f"Bearer {t.access_token}"},
    )
    assert key.status_code == 201, key.text
    # Everything as the tenant admin; the operator route with the operator token.
    _fuzz(live_server.url, key.json()["key"], tmp_path / "tenant.txt", "--exclude-path", "/v1/tenants")
    _fuzz(live_server.url, OPERATOR_TOKEN, tmp_path / "operator.txt", "--include-path", "/v1/tenants")


def _fuzz(url: str, token: str, report: Path, *selection: str) -> None:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    proc = subprocess.run(
        [
            exe,
            "run",
            f"{url}/schema/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            MAX_EXAMPLES,
            "--request-timeout",
            "20",
            "--phases",
            "examples,coverage,fuzzing",
            "--suppress-health-check",
            "all",
            "--generation-deterministic",
            # Strings as hostile as JSON allows: NUL and every other control character, any code point.
            "--generation-allow-x00",
            "true",
            "--generation-codec",
            "utf-8",
            *selection,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    # Every pattern the schema publishes is one OpenAPI tools can use (ECMA-262, as `anchored` writes them).
    assert "Dropped `" not in proc.stdout, proc.stdout[-6000:]
    tested = re.search(r"Tested: (\d+)", proc.stdout)
    cases = re.search(r"(\d+) generated", proc.stdout)
    assert tested and int(tested.group(1)) > 0, proc.stdout[-2000:]
    assert cases and int(cases.group(1)) > 0
