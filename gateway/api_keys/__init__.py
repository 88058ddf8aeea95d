"""Scoped, expiring, revocable API keys."""
