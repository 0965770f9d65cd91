"""Fixtures shared by the tests (helpers to import are in tests/helpers.py)."""

import pytest


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty user cache for one test (via $FASTNET_CACHE_DIR)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTNET_CACHE_DIR", str(cache))
    return cache
