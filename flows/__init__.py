"""Prefect flows (one per job)."""
