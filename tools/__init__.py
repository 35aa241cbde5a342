"""Maintenance scripts run from the repository root (python -m tools.NAME); nothing in the app imports them."""
