"""Test support code shared across test folders (importable because pytest's pythonpath has tests/)."""
