"""The touchpoint spine: every interaction with a customer, recorded once, and the profile
projection kept current from it."""
