"""Prefect tasks: thin wrappers over tru.stages (the one implementation of each step)."""
