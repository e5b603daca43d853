"""train package (filled by later issues)."""
