"""Workbench side of coupons."""
