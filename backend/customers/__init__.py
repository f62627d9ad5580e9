"""Customers (members): identity and stitching, phone protection, cars, assigned advisors, merges."""
