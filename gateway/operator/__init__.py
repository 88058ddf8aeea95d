"""The platform operator: tenant creation (API and CLI)."""
