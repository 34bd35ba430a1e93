"""Fixtures shared by the binding's tests."""

from pathlib import Path

import pytest

from eventstore import Store


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where a test's store lives (not created)."""
    return tmp_path / "events.store"


@pytest.fixture
def store(path: Path):
    """A writable store at `path`, closed after the test."""
    with Store(path) as s:
        yield s
