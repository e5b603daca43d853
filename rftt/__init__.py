"""rftt package (filled by later issues)."""
