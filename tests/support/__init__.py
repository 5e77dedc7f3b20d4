"""Shared helpers for mcpmux tests (third-party peers, conformance suite)."""
