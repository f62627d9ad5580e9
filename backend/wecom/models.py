"""Models of the wecom feature."""
