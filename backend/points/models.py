"""Models of the points feature."""
