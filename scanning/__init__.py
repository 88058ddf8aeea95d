"""Scanning: clamd client, libmagic type checks, archive limits, verdict types. Pure of HTTP and DB."""
