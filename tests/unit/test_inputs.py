"""Input normalisation: one form per email, patterns that cannot be fooled by a trailing newline."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tenants.inputs import (
    EMAIL_PATTERN,
    LINE_PATTERN,
    SLUG_PATTERN,
    TEXT_PATTERN,
    InvalidInput,
    account_key,
    anchored,
    instant,
    int64,
    is_line,
    normalize_email,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "tenants", "connectors", "scanning", "workers")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Admin@Example.TEST", "admin@example.test"),
        ("\uff21\uff24\uff2d\uff29\uff2e@example.test", "admin@example.test"),  # fullwidth ADMIN
        ("\u1d2cdmin@example.test", "admin@example.test"),  # modifier letter capital A
        ("\ufb01le@example.test", "file@example.test"),  # ligature fi
        ("STRASSE@example.test", "strasse@example.test"),
        ("straße@example.test", "strasse@example.test"),  # casefold, not lower
        ("  admin@example.test ", "admin@example.test"),
    ],
)
def test_compatibility_forms_and_case_give_one_email(raw: str, canonical: str) -> None:
    assert normalize_email(raw) == canonical
    assert normalize_email(canonical) == canonical  # stable


@pytest.mark.parametrize(
    "invisible",
    ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\x00", "\x1b", " ", "\u3000"],
)
def test_invisible_and_control_characters_in_an_email_are_refused(invisible: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(f"ad{invisible}min@example.test")
    assert account_key(f"ad{invisible}min@example.test") == "admin@example.test"


@pytest.mark.parametrize("raw", ["admin", "@example.test", "admin@", "a@b@c"])
def test_an_email_needs_one_at_sign_between_two_parts(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(raw)


def test_instants_postgres_can_take() -> None:
    ok = datetime(2030, 1, 1, tzinfo=UTC)
    assert instant(ok, "x") is ok
    for bad in (
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))),
        datetime(2030, 1, 1),
    ):
        with pytest.raises(InvalidInput):
            instant(bad, "x")
    assert int64(2**63 - 1, "x") == 2**63 - 1
    with pytest.raises(InvalidInput):
        int64(2**63, "x")


def test_text_allows_line_breaks_but_no_other_control_characters() -> None:
    assert re.search(TEXT_PATTERN, "-----BEGIN-----\r\nabc\n\tdef\n")
    for bad in ("a\x00", "a\x1b", "a\x7f", "a\x85"):
        assert re.search(TEXT_PATTERN, bad) is None


def test_is_line() -> None:
    assert is_line("héllo wörld \u202e")
    for bad in ("a\x00", "a\n", "a\x85", "a\u2028", "a\ud800"):
        assert not is_line(bad)


def _patterns() -> list[tuple[str, int, str, ast.expr]]:
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                args = (
                    [kw.value for kw in node.keywords if kw.arg == "pattern"] if name.endswith("Meta") else []
                )
                if name in ("re.compile", "re.match", "re.search") and node.args:
                    args = [node.args[0]]
                found.extend((str(path.relative_to(ROOT)), node.lineno, name, arg) for arg in args)
    return found


def test_no_validating_pattern_anchors_with_caret_and_dollar() -> None:
    """`$` also matches before a trailing newline, and msgspec searches its patterns."""
    patterns = _patterns()
    meta = [p for p in patterns if p[2].endswith("Meta")]
    assert len(meta) > 10, "the walk found too few msgspec patterns"
    for path, line, name, arg in patterns:
        if name.endswith("Meta"):
            # Published in OpenAPI too: written by `anchored` (or a pattern constant built by it).
            assert not isinstance(arg, ast.Constant), f"{path}:{line}: use tenants.inputs.anchored"
        elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            assert not arg.value.endswith("$"), f"{path}:{line}: {arg.value!r}: end with \\Z"


@pytest.mark.parametrize("pattern", [LINE_PATTERN, SLUG_PATTERN, EMAIL_PATTERN, anchored("[a-z]+")])
def test_anchored_patterns_refuse_a_trailing_newline(pattern: str) -> None:
    sample = {SLUG_PATTERN: "acme", EMAIL_PATTERN: "a@b.test"}.get(pattern, "abc")
    assert re.search(pattern, sample)
    assert re.search(pattern, sample + "\n") is None
    assert re.search(pattern, "\n" + sample) is None
