"""workers package (grows in later issues)."""
