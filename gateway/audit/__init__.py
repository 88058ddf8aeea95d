"""Append-only, hash-chained, per-tenant audit log."""

from gateway.audit.service import Actor, AuditContext, AuditRecorder, Target

__all__ = ["Actor", "AuditContext", "AuditRecorder", "Target"]
