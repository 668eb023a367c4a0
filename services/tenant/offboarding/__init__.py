"""Offboarding: suspend (OFFBOARDING), export to a signed, downloadable archive, erase, DELETED
(see runner.py)."""
