"""The tenant upload policy."""
