"""Tenants, users, roles and the permission matrix, API keys, and identity primitives."""
