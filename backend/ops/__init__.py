"""Operational endpoints for load balancers: liveness and readiness."""
