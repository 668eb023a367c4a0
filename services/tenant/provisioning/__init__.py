"""Provisioning as a durable workflow: named, idempotent steps recorded in the tenant store,
resumed after a crash, compensated when a step fails (see workflow.py)."""
