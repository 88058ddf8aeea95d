"""Filegate gateway: app factory, edge, HTTP controllers, audit log, CLI."""
