"""Coupons (优惠券): templates, claims, in-store write-off."""
