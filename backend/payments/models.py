"""Models of the payments feature."""
