"""The type decision: libmagic detection, the policy, declared-type contradictions, polyglots, SVG, archives."""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scanning import filetype, samples
from scanning.filetype import TypeCheck, TypePolicy, check_file, detect, mime_matches
from scanning.verdicts import Rejected

MEDIA = ("image/*", "video/*", "application/pdf")
ARCHIVES = (
    "application/zip",
    "application/gzip",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
)


def policy(*allowed: str) -> TypePolicy:
    return TypePolicy(
        allowed_types=allowed or ("*/*",),
        max_depth=2,
        max_members=1000,
        max_total_size=1024**3,
        max_ratio=100,
    )


def check(
    tmp_path: Path, data: bytes, *, declared: str | None = None, allowed: tuple[str, ...] = ("*/*",)
) -> TypeCheck:
    path = tmp_path / "upload"
    path.write_bytes(data)
    return check_file(path, declared_type=declared, filename="upload.bin", policy=policy(*allowed))


def reason(result: TypeCheck) -> str | None:
    return result.decision.reason if result.decision is not None else None


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_chunk(kind: bytes, data: bytes) -> bytes:
    png = samples.png_bytes()
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + png_chunk(kind, data) + png[iend:]


def jpeg_with_segment(marker: int, payload: bytes) -> bytes:
    jpeg = samples.jpeg_bytes()
    return jpeg[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + jpeg[2:]


# --- mime_matches -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "patterns", "expected"),
    [
        ("application/pdf", ["application/pdf"], True),
        ("image/png", ["image/*"], True),
        ("IMAGE/PNG", ["image/*"], True),
        ("image/png", ["IMAGE/PNG"], True),
        ("text/plain; charset=utf-8", ["text/plain"], True),
        ("text/plain", ["text/plain; charset=us-ascii"], True),
        ("application/x-executable", ["*/*"], True),
        ("video/mp4", ["image/*", "video/*"], True),
        ("image/png", ["image/jpeg"], False),
        ("image/png", [], False),
        ("imagex/png", ["image/*"], False),
        ("image", ["image/*"], False),
        ("application/pdf", ["application/pdf+xml"], False),
        ("text/html", ["text/plain"], False),
    ],
)
def test_mime_matches(mime: str, patterns: list[str], expected: bool) -> None:
    assert mime_matches(mime, patterns) is expected


# --- Detection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (samples.png_bytes, "image/png"),
        (samples.jpeg_bytes, "image/jpeg"),
        (samples.gif_bytes, "image/gif"),
        (samples.webp_bytes, "image/webp"),
        (samples.pdf_bytes, "application/pdf"),
        (samples.mp4_bytes, "video/mp4"),
        (samples.elf_bytes, "application/x-executable"),
        (samples.html_bytes, "text/html"),
        (samples.svg_bytes, "image/svg+xml"),
    ],
)
def test_detect(tmp_path: Path, make: object, expected: str) -> None:
    assert callable(make)
    path = tmp_path / "sample"
    path.write_bytes(make())
    assert detect(path) == expected


def test_detect_is_safe_from_many_threads(tmp_path: Path) -> None:
    makers = [samples.png_bytes, samples.pdf_bytes, samples.jpeg_bytes, samples.html_bytes]
    paths = []
    for index, make in enumerate(makers):
        path = tmp_path / f"sample-{index}"
        path.write_bytes(make())
        paths.append(path)
    expected = [detect(path) for path in paths]

    def detect_all(_: int) -> list[str]:
        return [detect(path) for path in paths]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(detect_all, range(200)))
    assert all(result == expected for result in results)


# --- Clean files pass -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "declared", "detected"),
    [
        (samples.png_bytes, "image/png", "image/png"),
        (samples.jpeg_bytes, "image/jpeg", "image/jpeg"),
        (samples.gif_bytes, "image/gif", "image/gif"),
        (samples.webp_bytes, "image/webp", "image/webp"),
        (samples.pdf_bytes, "application/pdf", "application/pdf"),
        (samples.mp4_bytes, "video/mp4", "video/mp4"),
        (samples.mp4_bytes, None, "video/mp4"),
        (samples.png_bytes, "application/octet-stream", "image/png"),
        (samples.jpeg_bytes, "image/png", "image/jpeg"),
    ],
)
def test_clean_media_pass(tmp_path: Path, make: object, declared: str | None, detected: str) -> None:
    assert callable(make)
    result = check(tmp_path, make(), declared=declared, allowed=MEDIA)
    assert result == TypeCheck(detected, None)


def test_multi_picture_jpeg_passes(tmp_path: Path) -> None:
    # MPF / gain-map JPEGs store further JPEGs after the first EOI.
    data = samples.jpeg_bytes() + samples.jpeg_bytes() + b"\x00" * 16
    assert check(tmp_path, data, allowed=MEDIA) == TypeCheck("image/jpeg", None)


def test_multi_picture_jpeg_with_a_zip_after_the_last_picture(tmp_path: Path) -> None:
    data = samples.jpeg_bytes() + samples.jpeg_bytes() + samples.zip_bytes({"a": b"b"})
    assert reason(check(tmp_path, data, allowed=MEDIA)) == "polyglot"


def test_jpeg_with_fill_bytes_and_stray_markers_passes(tmp_path: Path) -> None:
    jpeg = samples.jpeg_bytes()
    data = jpeg[:2] + b"\xff\xff\xff" + b"\xff\xd0" + jpeg[2:]
    assert check(tmp_path, data, allowed=MEDIA) == TypeCheck("image/jpeg", None)


def test_jpeg_with_eoi_bytes_inside_a_segment_passes(tmp_path: Path) -> None:
    data = jpeg_with_segment(0xFE, b"comment \xff\xd9 with an EOI inside")
    assert check(tmp_path, data, allowed=MEDIA) == TypeCheck("image/jpeg", None)


def test_padding_after_the_end_is_tolerated(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.png_bytes() + b"\x00" * 100, allowed=MEDIA)) is None
    assert reason(check(tmp_path, samples.pdf_bytes() + b"\r\n\n", allowed=MEDIA)) is None


def test_gif_without_trailer_passes(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.gif_bytes()[:-1], allowed=MEDIA)) is None


def test_truncated_images_without_foreign_data_pass(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.jpeg_bytes()[:-2], allowed=MEDIA)) is None
    assert reason(check(tmp_path, samples.png_bytes()[:-6], allowed=MEDIA)) is None


def test_pdf_with_junk_after_eof_passes(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.pdf_bytes() + b"junk left by a generator\n", allowed=MEDIA)) is None


# --- Policy and declared type -----------------------------------------------------------------------------


def test_detected_type_decides_against_the_policy(tmp_path: Path) -> None:
    result = check(tmp_path, samples.pdf_bytes(), declared="image/png", allowed=("image/*",))
    assert result == TypeCheck(
        "application/pdf", Rejected("type_not_allowed", "application/pdf is not an allowed type")
    )


def test_elf_declared_as_png_is_refused(tmp_path: Path) -> None:
    assert (
        reason(check(tmp_path, samples.elf_bytes(), declared="image/png", allowed=MEDIA))
        == "type_not_allowed"
    )
    result = check(tmp_path, samples.elf_bytes(), declared="image/png")
    assert result == TypeCheck(
        "application/x-executable",
        Rejected("type_mismatch", "declared image/png but the content is application/x-executable"),
    )


def test_html_declared_as_png_is_refused(tmp_path: Path) -> None:
    assert (
        reason(check(tmp_path, samples.html_bytes(), declared="image/png", allowed=MEDIA))
        == "type_not_allowed"
    )
    assert reason(check(tmp_path, samples.html_bytes(), declared="image/png")) == "type_mismatch"


def test_html_declared_as_text_is_a_mismatch(tmp_path: Path) -> None:
    result = check(tmp_path, samples.html_bytes(), declared="text/plain", allowed=("text/*",))
    assert reason(result) == "type_mismatch"


def test_svg_declared_as_png_is_a_mismatch(tmp_path: Path) -> None:
    assert (
        reason(check(tmp_path, samples.svg_bytes(), declared="image/png", allowed=MEDIA)) == "type_mismatch"
    )


@pytest.mark.parametrize("declared", [None, "", "application/octet-stream", "Application/Octet-Stream"])
def test_missing_or_generic_declaration_is_not_a_mismatch(tmp_path: Path, declared: str | None) -> None:
    assert reason(check(tmp_path, samples.html_bytes(), declared=declared)) is None


def test_declared_type_parameters_and_case_are_ignored(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.png_bytes(), declared="IMAGE/PNG; foo=bar", allowed=MEDIA)) is None


def test_html_behind_a_long_comment_counts_as_html(tmp_path: Path) -> None:
    data = b"<!--" + b"x" * 9000 + b"-->\n<html><body><script>alert(1)</script></body></html>\n"
    result = check(tmp_path, data, declared="text/plain", allowed=("text/plain",))
    assert result == TypeCheck("text/html", Rejected("type_not_allowed", "text/html is not an allowed type"))


# --- Polyglots --------------------------------------------------------------------------------------------


def test_jpeg_with_appended_zip(tmp_path: Path) -> None:
    result = check(tmp_path, samples.jpeg_with_zip(), declared="image/jpeg", allowed=MEDIA)
    assert result.detected_type == "image/jpeg"
    assert reason(result) == "polyglot"
    assert result.decision is not None
    assert "ZIP" in result.decision.detail


def test_png_with_appended_html(tmp_path: Path) -> None:
    result = check(tmp_path, samples.png_with_html(), declared="image/png", allowed=MEDIA)
    assert result == TypeCheck(
        "image/png", Rejected("polyglot", "97 bytes follow the end of the PNG at byte 67 (contains HTML)")
    )


def test_gif_javascript_polyglot(tmp_path: Path) -> None:
    result = check(tmp_path, samples.gif_js_polyglot(), declared="image/gif", allowed=MEDIA)
    assert result.detected_type == "image/gif"
    assert reason(result) == "polyglot"


def test_gif_with_data_after_trailer(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.gif_bytes() + b"alert(1)//", allowed=MEDIA)) == "polyglot"


def test_webp_with_appended_data(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.webp_bytes() + b"<script>x</script>", allowed=MEDIA)) == "polyglot"


def test_pdf_with_appended_zip(tmp_path: Path) -> None:
    result = check(tmp_path, samples.pdf_with_zip(), declared="application/pdf", allowed=MEDIA)
    assert result.detected_type == "application/pdf"
    assert reason(result) == "polyglot"


def test_pdf_with_appended_html(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.pdf_bytes() + samples.html_bytes(), allowed=MEDIA)) == "polyglot"


def test_jpeg_with_arbitrary_trailing_data(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.jpeg_bytes() + b"hello", allowed=MEDIA)) == "polyglot"


def test_truncated_jpeg_carrying_html(tmp_path: Path) -> None:
    data = samples.jpeg_bytes()[:-2] + samples.html_bytes()
    assert reason(check(tmp_path, data, allowed=MEDIA)) == "polyglot"


def test_zip_hidden_in_a_png_chunk(tmp_path: Path) -> None:
    # The zip's end record sits just before IEND: zip readers find it, the PNG itself is well formed.
    data = png_with_chunk(b"zIPx", samples.zip_bytes({"payload.html": samples.html_bytes()}))
    result = check(tmp_path, data, allowed=MEDIA)
    assert result == TypeCheck(
        "image/png", Rejected("polyglot", "the image/png file is also a readable ZIP archive")
    )


def test_mp4_with_appended_zip(tmp_path: Path) -> None:
    data = samples.mp4_bytes() + samples.zip_bytes({"a.html": samples.html_bytes()})
    assert reason(check(tmp_path, data, allowed=MEDIA)) == "polyglot"


def test_php_in_jpeg_comment(tmp_path: Path) -> None:
    data = jpeg_with_segment(0xFE, b"<?php system($_GET['c']); ?>")
    result = check(tmp_path, data, allowed=MEDIA)
    assert result == TypeCheck("image/jpeg", Rejected("polyglot", "the image carries '<?php' markup"))


def test_script_in_png_text_chunk(tmp_path: Path) -> None:
    data = png_with_chunk(b"tEXt", b"Comment\x00<script>alert(1)</script>")
    assert reason(check(tmp_path, data, allowed=MEDIA)) == "polyglot"


def test_text_that_is_also_a_zip(tmp_path: Path) -> None:
    data = b"plain text\n" * 10_000 + samples.zip_bytes({"a": b"b"})
    result = check(tmp_path, data, allowed=("text/plain", "application/octet-stream"))
    assert reason(result) == "polyglot"


# --- SVG --------------------------------------------------------------------------------------------------


def test_clean_svg_passes_when_images_are_allowed(tmp_path: Path) -> None:
    inner = (
        '<a href="https://example.com/"><text>x</text></a><image href="data:image/png;base64,iVBORw0KGgo="/>'
    )
    assert check(tmp_path, samples.svg_bytes(inner), allowed=MEDIA) == TypeCheck("image/svg+xml", None)


def test_clean_svg_is_not_allowed_without_images(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.svg_bytes(), allowed=("application/pdf",))) == "type_not_allowed"


@pytest.mark.parametrize(
    "svg",
    [
        samples.svg_bytes("<script>alert(1)</script>"),
        samples.svg_bytes().replace(b"<svg ", b'<svg onload="alert(1)" '),
        samples.svg_bytes('<rect width="1" height="1" ONCLICK="alert(1)"/>'),
        samples.svg_bytes('<image href="x" onerror="alert(1)"/>'),
        samples.svg_bytes(
            '<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="javascript:alert(1)">x</a>'
        ),
        samples.svg_bytes('<a href="&#106;ava&#x09;script:alert(1)"><text>x</text></a>'),
        samples.svg_bytes('<a href=" JavaScript:alert(1)">x</a>'),
        samples.svg_bytes('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>'),
        samples.svg_bytes('<animate attributeName="href" values="javascript:alert(1)"/>'),
        samples.svg_bytes('<use href="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="/>'),
        samples.svg_bytes('<rect><set attributeName="onmouseover" to="alert(1)"/></rect>'),
        samples.svg_bytes('<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject>'),
        samples.svg_bytes('<h:iframe xmlns:h="http://www.w3.org/1999/xhtml" src="https://evil/"/>'),
        samples.svg_bytes('<embed src="x.swf"/>'),
        samples.svg_bytes('<object data="x.html"/>'),
        samples.svg_bytes('<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script>'),
        samples.svg_bytes('<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd"/>'),
        b'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&xxe;</text></svg>',
        b'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>',
        b'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ATTLIST svg onload CDATA "alert(1)">]>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        b'<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="evil.xsl"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        samples.svg_bytes("<script>alert(1)</script>").decode().replace("UTF-8", "UTF-16").encode("utf-16"),
    ],
)
def test_svg_active_content(tmp_path: Path, svg: bytes) -> None:
    result = check(tmp_path, svg, allowed=MEDIA)
    assert result.detected_type == "image/svg+xml"
    assert reason(result) == "active_content", result


def test_svg_script_reason_and_detail(tmp_path: Path) -> None:
    result = check(tmp_path, samples.svg_bytes("<script>alert(1)</script>"), allowed=MEDIA)
    assert result == TypeCheck("image/svg+xml", Rejected("active_content", "SVG contains <script> element"))


def test_svg_onload_detail(tmp_path: Path) -> None:
    data = samples.svg_bytes().replace(b"<svg ", b'<svg onload="alert(1)" ')
    result = check(tmp_path, data, allowed=MEDIA)
    assert result == TypeCheck(
        "image/svg+xml", Rejected("active_content", "SVG contains event handler attribute 'onload' on <svg>")
    )


@pytest.mark.parametrize("declaration", [b"", b'<?xml version="1.0" encoding="UTF-8"?>\n'])
def test_svg_behind_a_long_comment_is_found(tmp_path: Path, declaration: bytes) -> None:
    body = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'
    data = declaration + b"<!--" + b"x" * 9000 + b"-->\n" + body
    path = tmp_path / "hidden"
    path.write_bytes(data)
    assert detect(path) in ("text/plain", "text/xml")  # libmagic does not see it
    result = check(tmp_path, data, allowed=("image/*", "text/plain", "text/xml"))
    assert result == TypeCheck("image/svg+xml", Rejected("active_content", "SVG contains <script> element"))


def test_svg_hidden_as_text_counts_as_svg_for_the_policy(tmp_path: Path) -> None:
    data = b"<!--" + b"x" * 9000 + b'-->\n<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>\n'
    assert check(tmp_path, data, allowed=("text/plain",)) == TypeCheck(
        "image/svg+xml", Rejected("type_not_allowed", "image/svg+xml is not an allowed type")
    )
    assert check(tmp_path, data, allowed=("image/*",)) == TypeCheck("image/svg+xml", None)


def test_svg_behind_a_megabyte_of_comments_is_still_found(tmp_path: Path) -> None:
    comments = b"<!--" + b"x" * (2 * 1024 * 1024) + b"-->\n" + b"<?pi data?>\n" * 1000
    doctype = b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
    data = doctype + comments + b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'
    result = check(tmp_path, data, allowed=("image/*", "text/*"))
    assert result == TypeCheck("image/svg+xml", Rejected("active_content", "SVG contains <script> element"))


@pytest.mark.parametrize(
    "prolog",
    [
        b'<!DOCTYPE svg SYSTEM "odd[literal">\n',
        b'<!DOCTYPE svg [\n<!ENTITY x "]>">\n]>\n',
        b"<!-- " + b"x" * 9000 + b" -->\n<!-- a second comment -->\n",
    ],
)
def test_svg_root_is_found_behind_tricky_prologs(tmp_path: Path, prolog: bytes) -> None:
    data = prolog + b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'
    result = check(tmp_path, data, allowed=("image/*", "text/*", "application/xml"))
    assert result.detected_type == "image/svg+xml"
    assert reason(result) == "active_content"


def test_html_whose_comment_xml_would_refuse_still_counts_as_html(tmp_path: Path) -> None:
    data = b"<!-- -- not XML -- " + b"x" * 9000 + b" -->\n<html><body>hi</body></html>\n"
    assert check(tmp_path, data, allowed=("text/plain",)).detected_type == "text/html"


def test_svg_with_public_doctype_passes(tmp_path: Path) -> None:
    data = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        b'<defs><rect id="r" width="1" height="1"/></defs><use xlink:href="#r"/></svg>'
    )
    assert check(tmp_path, data, allowed=MEDIA) == TypeCheck("image/svg+xml", None)


def test_malformed_svg_cannot_be_verified(tmp_path: Path) -> None:
    data = b'<svg xmlns="http://www.w3.org/2000/svg"><rect></svg>'
    result = check(tmp_path, data, allowed=MEDIA)
    assert reason(result) == "active_content"
    assert result.decision is not None
    assert "not well-formed" in result.decision.detail


def test_oversized_svg_cannot_be_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filetype, "SVG_MAX_BYTES", 1000)
    data = samples.svg_bytes("<rect/>" * 500)
    assert reason(check(tmp_path, data, allowed=MEDIA)) == "active_content"


def test_plain_text_is_not_taken_for_markup(tmp_path: Path) -> None:
    for text in (b"hello\n", b"<not markup", b"<!-- only a comment -->", b"   \n\n", b"<p>x</p>"):
        assert check(tmp_path, text, allowed=("text/*",)).decision is None


# --- Archives ---------------------------------------------------------------------------------------------


def test_zip_within_limits_passes(tmp_path: Path) -> None:
    data = samples.zip_bytes({"a.txt": b"hello"})
    assert check(tmp_path, data, allowed=ARCHIVES) == TypeCheck("application/zip", None)


def test_tar_gz_within_limits_passes(tmp_path: Path) -> None:
    data = samples.tar_gz_bytes({"a.txt": b"hello", "b.txt": b"world"})
    assert check(tmp_path, data, allowed=ARCHIVES) == TypeCheck("application/gzip", None)


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    result = check(tmp_path, samples.zip_bomb(20 * 1024 * 1024), allowed=ARCHIVES)
    assert result.detected_type == "application/zip"
    assert reason(result) == "archive_limits"


def test_gzip_bomb_is_refused(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.gzip_bomb(20 * 1024 * 1024), allowed=ARCHIVES)) == "archive_limits"


def test_office_documents_are_inspected_as_zips(tmp_path: Path) -> None:
    detected = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert check(tmp_path, samples.docx_bytes(), allowed=ARCHIVES) == TypeCheck(detected, None)
    bomb = samples.docx_bytes({"word/media/zeros.bin": bytes(20 * 1024 * 1024)})
    result = check(tmp_path, bomb, allowed=ARCHIVES)
    assert result.detected_type == detected
    assert reason(result) == "archive_limits"


def test_encrypted_and_corrupt_zips(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.encrypted_zip(), allowed=ARCHIVES)) == "encrypted_archive"
    assert reason(check(tmp_path, samples.corrupt_zip(), allowed=ARCHIVES)) == "corrupt_archive"


def test_zip_quine_is_refused(tmp_path: Path) -> None:
    assert reason(check(tmp_path, samples.quine_zip(), allowed=ARCHIVES)) == "archive_limits"


def test_zip_with_data_before_it_is_inspected_as_an_archive(tmp_path: Path) -> None:
    # Self-extracting archives and zip-based formats libmagic names otherwise are still walked.
    data = b"\x00\x01\x02\x03" * 64 + samples.zip_bomb(20 * 1024 * 1024)
    assert reason(check(tmp_path, data)) == "archive_limits"


def named(tmp_path: Path, data: bytes, filename: str, action: str = "rename") -> TypeCheck:
    path = tmp_path / "upload"
    path.write_bytes(data)
    base = policy()
    return check_file(
        path,
        declared_type=None,
        filename=filename,
        policy=TypePolicy(
            allowed_types=base.allowed_types,
            max_depth=base.max_depth,
            max_members=base.max_members,
            max_total_size=base.max_total_size,
            max_ratio=base.max_ratio,
            extension_mismatch=action,  # type: ignore[arg-type]
        ),
    )


TEXT = b"just words <b onmouseover=alert(1)>hover</b>\n"


@pytest.mark.parametrize(
    "name",
    [
        "a.html",
        "a.HTM",
        "a.\uff48\uff54\uff4d\uff4c",  # fullwidth letters
        "a.js",
        "a.mjs",
        "a.ps1",
        "a.vbs",
        "a.svg",
        "a.hta",
        "a.bat",
        "a.cmd",
        "a.exe",
        "a.sh",
    ],
)
def test_text_named_with_an_active_extension_is_a_mismatch(tmp_path: Path, name: str) -> None:
    renamed = named(tmp_path, TEXT, name)
    assert (renamed.detected_type, renamed.decision, renamed.rename_extension) == ("text/plain", None, "txt")
    rejected = named(tmp_path, TEXT, name, "reject")
    assert reason(rejected) == "extension_mismatch" and rejected.rename_extension is None


@pytest.mark.parametrize(
    ("data", "name", "extension"),
    [
        (samples.png_bytes(), "photo.html", "png"),
        (samples.pdf_bytes(), "doc.js", "pdf"),
        (b"@echo off\r\necho hi\r\n", "run.sh", "txt"),  # a batch file is not a shell script
    ],
)
def test_other_content_under_an_active_extension_gets_its_own(
    tmp_path: Path, data: bytes, name: str, extension: str
) -> None:
    assert named(tmp_path, data, name).rename_extension == extension


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (TEXT, "notes.txt"),
        (TEXT, "README"),
        (TEXT, "archive.tar.html.txt"),
        (samples.png_bytes(), "photo.png"),
        (samples.svg_bytes("<rect width='1' height='1'/>"), "inert.svg"),
        (b"#!/bin/sh\necho hi\n", "tool.sh"),
        (b"@echo off\r\necho hi\r\n", "tool.bat"),
    ],
)
def test_names_borne_out_by_their_content_pass(tmp_path: Path, data: bytes, name: str) -> None:
    result = named(tmp_path, data, name, "reject")
    assert (result.decision, result.rename_extension) == (None, None), result
