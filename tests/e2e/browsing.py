"""Driving Debian's chromium through tests/e2e/browser/run.mjs (playwright-core), for the e2e tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "e2e" / "browser"
RUN = BROWSER_DIR / "run.mjs"
CHROMIUM = Path(os.environ.get("FILEGATE_CHROMIUM", "/usr/bin/chromium"))
SESSION = "/v1/auth/session"
SESSION = "/v1/auth/session"


def run_script(cmd: list[str], timeout: float) -> None:
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd[0]} failed:\n{r.stdout}\n{r.stderr}"


def ensure_browser() -> Path:
    """chromium + playwright-core (scripts/browser.sh) and the page's bundle (scripts/web.sh), both
    idempotent: milliseconds once installed and built."""
    run_script([str(ROOT / "scripts" / "browser.sh")], timeout=900)
    run_script([str(ROOT / "scripts" / "web.sh")], timeout=600)
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing after scripts/browser.sh"
    assert (ROOT / "gateway" / "web" / "static" / "upload.js").is_file()
    return RUN


def browse(server: LiveServer, steps: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    script = {
        "baseURL": server.url,
        "timeout": 20000,
        "failureScreenshot": str(tmp_path / "failure.png"),
        "steps": steps,
    }
    r = subprocess.run(
        ["node", str(RUN)],
        input=json.dumps(script),
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = r.stdout.strip().splitlines()
    assert lines, f"run.mjs printed nothing (exit {r.returncode}):\n{r.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert r.returncode == 0 and result["ok"], (
        f"browser script failed: {result.get('error')}\nresult: {json.dumps(result, indent=1)[:4000]}\n"
        f"stderr: {r.stderr[-2000:]}\ngateway log (tail): {server.log_text()[-2000:]}"
    )
    return result


def unexpected_errors(result: dict[str, Any]) -> list[Any]:
    """Console errors other than Chromium's note on the session probe's non-200 answer (the page reads
    that as "signed out"), plus every uncaught exception and CSP violation."""
    console = [
        e
        for e in result["consoleErrors"]
        if not (e["text"].startswith("Failed to load resource") and e["url"].endswith(SESSION))
    ]
    return console + result["pageErrors"] + result["cspViolations"]
