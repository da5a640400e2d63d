"""End-to-end tests: real simulator, real receivers, an in-process daemon (tests/e2e/harness.py)."""
