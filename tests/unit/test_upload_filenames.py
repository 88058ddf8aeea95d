"""Upload file names: whatever a client sends, the stored name is one the connectors' key rule accepts."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import InvalidKey
from connectors.paths import MAX_KEY_BYTES, check_relative, check_segment
from gateway.errors import ValidationFailed
from gateway.uploads import filenames
from gateway.uploads.service import MAX_PATH_BYTES, checked_path

# Names the old sanitizer kept but `connectors.paths` refuses: delivery of them failed forever.
REFUSED_BY_CONNECTORS = [
    "%2e%2e",
    "%2E%2E",
    "..%2f..%2fpasswd",
    "..%5c..%5cwin.ini",
    "%252e%252e",
    "%25252525252e",  # more layers of percent-encoding than the rule reads
    "a%00b.png",
    "%e2%80%aeevil.png",  # a bidi override behind percent-encoding
    "\uff0e\uff0e",  # fullwidth dots
    "\u2025",  # two-dot leader
    "\uff0e\uff0e\uff0fetc",
    "x\uff3c..\uff3cy",  # fullwidth reverse solidus
    "e\u0301 %2e%2e",
]


@pytest.mark.parametrize("name", REFUSED_BY_CONNECTORS)
def test_names_the_connectors_refuse_are_made_safe_at_ingest(name: str) -> None:
    with pytest.raises(InvalidKey):
        check_relative(name)
    stored = filenames.sanitize(name)
    assert check_segment(stored) == stored
    assert check_relative(f"{'d' * 100}/{stored}")


def test_ordinary_names_are_kept() -> None:
    for name in ("photo.png", "résumé 2026.pdf", "100% done.txt", "a%zz.png", "notes..txt", "日本語.png"):
        assert filenames.sanitize(name) == name


@settings(max_examples=3000, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_every_sanitized_name_passes_the_connectors_rule(name: str) -> None:
    stored = filenames.sanitize(name)
    assert check_segment(stored) == stored
    assert len(stored.encode()) <= filenames.MAX_BYTES


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("%2eEfF5c.\uff0e\u2025/\\ a0")), max_size=60))
def test_percent_and_dot_soup_passes_the_connectors_rule(name: str) -> None:
    stored = filenames.sanitize(name)
    assert check_segment(stored) == stored


def test_a_delivery_path_leaves_room_for_any_name() -> None:
    longest_name = "n" * filenames.MAX_BYTES
    path = checked_path("p" * MAX_PATH_BYTES)
    assert path is not None
    assert check_relative(f"{path}/{longest_name}")
    assert len(f"{uuid.uuid4()}/{path}/{longest_name}".encode()) <= MAX_KEY_BYTES
    with pytest.raises(ValidationFailed):
        checked_path("p" * (MAX_PATH_BYTES + 1))


def test_a_renamed_name_still_fits_and_passes() -> None:
    for name in ("a.js", "x" * 200, "y" * 195 + ".html", "upload"):
        renamed = filenames.with_extension(filenames.sanitize(name), "txt")
        assert renamed.endswith(".txt")
        assert len(renamed.encode()) <= filenames.MAX_BYTES
        assert check_segment(renamed) == renamed


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("a_vti_b.png", "a_vti-b.png"),
        ("X_VTI_.txt", "X_VTI-.txt"),
        ("~$doc.docx", "~_doc.docx"),
        ("desktop.ini", "_desktop.ini"),
    ],
)
def test_names_sharepoint_refuses_are_made_safe_too(name: str, stored: str) -> None:
    assert filenames.sanitize(name) == stored
