"""Structured JSON logs; one formatter redacts secrets from every line, ours and the libraries'."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

REDACTED = "[redacted]"
_SENSITIVE_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|authorization|cookie|totp|otp|recovery|credential|private|api_?key$|^key$)",
    re.IGNORECASE,
)
_SENSITIVE_VALUE = [
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"\bfgr?_[0-9a-f]{32}_[A-Za-z0-9_-]{20,}"),  # API keys and refresh tokens
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"otpauth://\S+"),
    re.compile(r"(?i)(password|secret|token)=[^&\s]+"),
]


# Every pattern above needs one of these; most log values have none, and one search is cheaper than five.
_MAYBE_SENSITIVE = re.compile(r"eyJ|fgr?_|(?i:bearer|basic)|otpauth|=")


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return REDACTED
    if isinstance(value, str):
        if _MAYBE_SENSITIVE.search(value) is None:
            return value
        for pattern in _SENSITIVE_VALUE:
            value = pattern.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SENSITIVE_KEY.search(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop values under sensitive keys and token-shaped strings anywhere."""
    for key in list(event_dict):
        if _SENSITIVE_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


# Database drivers and SQLAlchemy quote the values of a failed statement in their messages ("invalid input
# for query argument $1: …", "[parameters: …]"): emails, password and key hashes. Their messages are
# withheld from the log; the exception's type, SQLSTATE and traceback say enough to find the bug.
_WITHHELD_MODULES = ("sqlalchemy.", "asyncpg.", "psycopg.", "psycopg2.")


def _message(exc: BaseException) -> str:
    module = type(exc).__module__ + "."
    if not module.startswith(_WITHHELD_MODULES):
        return str(exc)
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(exc, "sqlstate", None) or getattr(orig, "sqlstate", None)
    cause = f"{type(orig).__name__}, " if orig is not None else ""
    return f"[message withheld: it may quote statement values] ({cause}sqlstate {sqlstate})"


def format_exception(exc_info: Any) -> str:
    """A traceback like the stdlib's, with the messages of database errors withheld (see above)."""
    exc = exc_info[1]
    chain: list[BaseException] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    parts: list[str] = []
    for exc in reversed(chain):
        if parts:
            parts.append("\nThe above exception led to the following exception:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(exc.__traceback__))
        kind = type(exc)
        parts.append(f"{kind.__module__}.{kind.__qualname__}: {_message(exc)}\n")
    return "".join(parts).rstrip("\n")


def json_formatter() -> logging.Formatter:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.ExceptionRenderer(format_exception),
            redact,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging through the one redacting JSON formatter."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # httpx/httpcore log request URLs at INFO, and botocore/azure/office365 may log request details at
    # DEBUG: none of them is allowed to put a connector's URL, token or signature in our logs.
    for noisy in (
        "sqlalchemy.engine",
        "asyncio",
        "httpx",
        "httpcore",
        "botocore",
        "boto3",
        "urllib3",
        "azure",
        "office365",
        "msal",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
