"""Background jobs of the points feature (registered with backend.platform.jobs.job)."""
