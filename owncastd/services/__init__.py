"""Background services that run as children of the supervisor (one process each)."""
