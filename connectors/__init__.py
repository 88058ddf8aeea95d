"""connectors package (grows in later issues)."""
