"""Fixtures of the local-pipeline tests, shared: the tiny models folder, a Soul ID
with stand-in insightface embeddings, and ``SOULID_MODELS_DIR`` pointing at the
folder (autouse where imported). Import them by name::

    from tiny_fixtures import _models_env, models_root, soul  # noqa: F401  (fixtures)
"""
from __future__ import annotations

import pytest

import local_tiny_models as tiny


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    return tiny.build_all(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(scope="module")
def soul(faces):
    return tiny.soul_with_embeddings(faces)


@pytest.fixture(autouse=True)
def _models_env(models_root, monkeypatch):
    monkeypatch.setenv("SOULID_MODELS_DIR", str(models_root))
    monkeypatch.delenv("SOULID_REQUIRE_FACEID_LORA", raising=False)
