"""The test suite (docs/architecture.md, "Tests"; CONTRIBUTING.md for the fast loop and the full run)."""
