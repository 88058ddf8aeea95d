"""scanning package (grows in later issues)."""
