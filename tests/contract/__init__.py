"""Contract tests: every Store backend against the port docstrings."""
