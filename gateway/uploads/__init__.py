"""Uploads: streamed ingest into quarantine, scanning pipeline, release of clean files."""
