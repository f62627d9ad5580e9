"""Staff-facing payments endpoints."""
