"""search package (filled by later issues)."""
