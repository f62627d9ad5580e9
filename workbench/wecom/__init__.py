"""Staff-facing wecom endpoints."""
