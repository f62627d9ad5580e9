"""Background jobs of the wecom feature (registered with backend.platform.jobs.job)."""
