"""Storage connections: the API over connection records, brokered object access, signed media links."""
