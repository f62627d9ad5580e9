"""Staff-facing points endpoints."""
