"""HTTP endpoints for callers: the pre-send callouts, health, errors and authentication."""
