"""Background jobs of the payments feature (registered with backend.platform.jobs.job)."""
