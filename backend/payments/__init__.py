"""WeChat Pay APIv3 payment orders, notifications, refunds and reconciliation. Issue 5."""
