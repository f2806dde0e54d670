"""Helpers shared by several test modules (imported as ``helpers.*``: tests/ is on sys.path)."""
