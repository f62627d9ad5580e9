"""The organisation: group → division → region → store, the staff in it, and data scopes."""
