"""The clamd client against a real, private clamd (scripts/clamd.sh)."""
