"""Plumbing shared by every vrstack daemon: config files, JSON logs, health, shutdown."""
