"""Test helpers shared across test packages (offline image building, …)."""
