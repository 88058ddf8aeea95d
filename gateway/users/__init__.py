"""Users of a tenant: list, create, read, change role or disable, erase."""
