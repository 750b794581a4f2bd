"""pytest fixtures for the cloud tests: the stand-in server, the environment
that points soulid at it, and a real Soul ID (Obama fixture photos, dlib).

Import into a test module: ``from standin.fixtures import *  # noqa``.
"""
from __future__ import annotations

import os

import httpx
import pytest

from .server import AURASHOT_KEY, KEY_ID, KEY_SECRET, WAVESPEED_KEY, StandIn

#: Poll fast in tests (the engine reads these; real defaults are 2 s .. 10 s).
FAST = {"SOULID_POLL_INITIAL": "0.05", "SOULID_POLL_MAX": "0.2", "SOULID_HTTP_TIMEOUT": "5"}
SECRETS = (KEY_SECRET, KEY_ID, WAVESPEED_KEY, AURASHOT_KEY)


@pytest.fixture(scope="session")
def standin_server():
    with StandIn(queue_s=0.2, run_s=0.3) as s:
        yield s


@pytest.fixture
def standin(standin_server):
    """The running stand-in, its counters and faults reset."""
    httpx.post(standin_server.url + "/_standin/reset")
    httpx.post(standin_server.url + "/_standin/config", json={"queue_s": 0.2, "run_s": 0.3, "cap": 4})
    return standin_server


def cloud_env_vars(url: str) -> dict:
    return {"HF_KEY": f"{KEY_ID}:{KEY_SECRET}", "WAVESPEED_API_KEY": WAVESPEED_KEY,
            "AURASHOT_API_KEY": AURASHOT_KEY, "SOULID_HIGGSFIELD_URL": url, "SOULID_WAVESPEED_URL": url,
            "SOULID_AURASHOT_URL": url + "/aurashot", **FAST}


@pytest.fixture
def cloud_env(standin, monkeypatch):
    """Environment pointing every provider at the stand-in, with its keys."""
    for k, v in cloud_env_vars(standin.url).items():
        monkeypatch.setenv(k, v)
    return standin


def stats(s) -> dict:
    return httpx.get(s.url + "/_standin/stats").json()


def faults(s, *items: dict) -> None:
    httpx.post(s.url + "/_standin/faults", json={"faults": list(items)}).raise_for_status()


#: Cast mode's people (distinct shots of each, real fixture photos).
CAST_PEOPLE = {"obama": ["obama/obama.jpg", "obama/obama2.jpg", "obama/obama3.jpg", "obama/obama4.jpg"],
               "kit_harington": ["kit_harington/kit1.jpeg", "kit_harington/kit2.jpeg", "kit_harington/kit3.jpg"],
               "alex_lacamoire": ["alex_lacamoire/alex1.png", "alex_lacamoire/alex2.jpg", "alex_lacamoire/alex3.jpg"]}


def enable_cast_mode(url: str, faces) -> None:
    """Switch the stand-in at ``url`` to cast mode with :data:`CAST_PEOPLE` (see :mod:`.server`)."""
    cfg = {p: [str(faces / f) for f in fs] for p, fs in CAST_PEOPLE.items()}
    httpx.post(url + "/_standin/config", json={"cast_people": cfg}).raise_for_status()


@pytest.fixture
def cast_mode(cloud_env, faces):
    """``cloud_env`` with the stand-in in cast mode."""
    enable_cast_mode(cloud_env.url, faces)
    return cloud_env


@pytest.fixture(scope="session")
def _obama_bytes(faces):
    from soulid.soul.create import create_soul_id

    photos = [faces / "obama" / n for n in ("obama.jpg", "obama2.jpg", "obama-480p.jpg", "obama_small.jpg")]
    res = create_soul_id(photos, "obama", analyzer="dlib", workers=1)
    assert res.soul is not None, res.report
    return res.soul.to_bytes()


@pytest.fixture
def obama(_obama_bytes):
    """A fresh copy of a real Soul ID built from four Obama photos."""
    from soulid.soul.soulfile import SoulID

    return SoulID.from_bytes(_obama_bytes)


@pytest.fixture
def trained_obama(obama, cloud_env):
    """``obama`` trained on the stand-in (Higgsfield v1 custom reference)."""
    from soulid.backends.remote_training import train_remote

    train_remote(obama, "higgsfield", "v1")
    return obama


__all__ = ["standin_server", "standin", "cloud_env", "obama", "_obama_bytes", "trained_obama", "stats", "faults",
           "cloud_env_vars", "SECRETS", "FAST", "cast_mode", "enable_cast_mode", "CAST_PEOPLE"]
