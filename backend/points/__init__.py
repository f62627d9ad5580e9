"""Points ledger with expiry buckets, tiers, daily sign-in and the points mall. Issue 5."""
