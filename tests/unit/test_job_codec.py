"""The job codec arq uses in every shape: plain values round-trip, nothing else is ever decoded."""

from __future__ import annotations

import pickle

import msgspec
import pytest
from arq.jobs import deserialize_job_raw, deserialize_result, serialize_job, serialize_result

from workers import codec


def test_a_job_round_trips_as_arq_reads_it() -> None:
    raw = serialize_job("scan_upload", ("t-1", "u-1"), {}, None, 1_700_000_000_000, serializer=codec.encode)
    name, args, kwargs, job_try, enqueued = deserialize_job_raw(raw, deserializer=codec.decode)
    assert (name, list(args), kwargs, job_try, enqueued) == (
        "scan_upload",
        ["t-1", "u-1"],
        {},
        None,
        1_700_000_000_000,
    )


def test_a_failed_jobs_exception_is_kept_as_text() -> None:
    raw = serialize_result(
        "scan_upload",
        ("u",),
        {},
        1,
        1,
        False,
        ValueError("boom"),
        1,
        2,
        "ref",
        "q",
        "id",
        serializer=codec.encode,
    )
    assert raw is not None
    result = deserialize_result(raw, deserializer=codec.decode)
    assert result.success is False
    assert result.result == "ValueError: boom"


def test_a_pickle_is_refused_without_being_unpickled(tmp_path) -> None:
    class Touch:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(tmp_path / "pwned"), "w"))

    with pytest.raises(msgspec.DecodeError):
        codec.decode(pickle.dumps({"f": "scan_upload", "a": (Touch(),)}))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("raw", [b"", b"\x93\x01\x02\x03", b"not msgpack at all"])
def test_anything_but_a_mapping_is_refused(raw: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        codec.decode(raw)


def test_only_plain_values_are_encoded() -> None:
    with pytest.raises(NotImplementedError):
        codec.encode({"a": object()})
