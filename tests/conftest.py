"""Shared test fixtures.

* ``faces``: the real photo fixtures in ``../shared/fixtures/faces`` (override
  with ``$SOULID_FIXTURES``); tests that need them skip with a reason when absent.
* Every test runs with its own data, config, cache and library folders, so no
  test reads or writes the user's real files or credentials.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# tests/ on sys.path: `from standin import server`, `import helpers`.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def fixtures_root() -> Path:
    env = os.environ.get("SOULID_FIXTURES")
    return Path(env) if env else REPO.parent / "shared" / "fixtures" / "faces"


@pytest.fixture(scope="session")
def faces() -> Path:
    root = fixtures_root()
    if not (root / "obama").is_dir():
        pytest.skip(f"real face fixtures not found at {root} (set SOULID_FIXTURES)")
    return root


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    for var, sub in (
        ("SOULID_DATA_DIR", "data"),
        ("SOULID_CONFIG_DIR", "config"),
        ("SOULID_CACHE_DIR", "cache"),
        ("SOULID_LIBRARY", "library"),
    ):
        monkeypatch.setenv(var, str(tmp_path / "_user" / sub))
    for var in ("HF_KEY", "HF_API_KEY", "HF_API_SECRET", "WAVESPEED_API_KEY", "AURASHOT_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield
