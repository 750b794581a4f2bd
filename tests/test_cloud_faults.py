"""Every fault the stand-in can inject, and the engine's documented answer to it.

The generic Soul route (no Soul ID) keeps these fast; what is asserted is the
client's behaviour and the server's counters (paid submits, replays, cancels).
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from soulid.backends import engine as E
from soulid.backends import media
from soulid.backends.base import GenerateRequest, get_backend
from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import faults, stats

ROUTE = "/higgsfield-ai/soul/standard"


def gen(seed=1, **kw):
    return get_backend("higgsfield", **kw).generate(GenerateRequest(prompt="a lighthouse", seed=seed, quality="720p",
                                                                    aspect="1:1"))


def paid(s) -> int:
    return stats(s)["paid"].get(ROUTE.lstrip("/"), 0)


@pytest.mark.parametrize("kind,exc,text", [
    ("401", E.CredentialsRejected, "rejected the API key from the environment variable HF_KEY (401)"),
    ("403", E.InsufficientCredits, "not enough credits or no access (403): Not enough credits"),
    ("404", E.NotFound, "not found (404)"),
    ("422", E.ValidationFailed, "prompt: String should have at most 2000 characters"),
    ("423", E.ModelBlocked, "model is blocked for this account (423)"),
])
def test_submit_errors_are_clear_and_nothing_is_paid(cloud_env, kind, exc, text):
    faults(cloud_env, {"kind": kind, "path": ROUTE, "method": "POST"})
    with pytest.raises(exc, match=re.escape(text)) as ei:
        gen()
    assert ei.value.status == int(kind)
    assert paid(cloud_env) == 0
    # a failed submit is not a paid job: the next try submits afresh and succeeds
    assert gen().images.shape == (1, 1024, 1024, 3)
    assert paid(cloud_env) == 1


@pytest.mark.parametrize("code", ["500", "502", "503"])
def test_server_errors_on_submit_are_retried_with_the_same_key(cloud_env, code):
    faults(cloud_env, {"kind": code, "path": ROUTE, "method": "POST", "count": 2})
    res = gen()
    st = stats(cloud_env)
    assert res.images.shape[0] == 1 and paid(cloud_env) == 1
    assert st["requests"]["POST " + ROUTE] == 3


def test_status_errors_are_retried(cloud_env):
    faults(cloud_env, {"kind": "503", "path": "/requests/", "method": "GET", "count": 2},
           {"kind": "slow", "path": "/requests/", "method": "GET", "seconds": 0.3})
    assert gen().images.shape[0] == 1 and paid(cloud_env) == 1


def test_concurrency_400_is_back_pressure_not_failure(cloud_env):
    faults(cloud_env, {"kind": "concurrency", "path": ROUTE, "method": "POST", "count": 3})
    res = gen()
    assert res.images.shape[0] == 1
    assert paid(cloud_env) == 1 and stats(cloud_env)["requests"]["POST " + ROUTE] == 4


@pytest.mark.parametrize("fault", [{"kind": "drop"}, {"kind": "slow", "seconds": 1.5}])
def test_ambiguous_submit_is_resent_with_the_same_key(cloud_env, monkeypatch, fault):
    """The POST was accepted but its answer lost (dropped / timed out): the
    resend carries the same Idempotency-Key, so the server counts one paid job."""
    monkeypatch.setenv("SOULID_HTTP_TIMEOUT", "0.7")
    faults(cloud_env, {**fault, "path": ROUTE, "method": "POST"})
    res = gen()
    st = stats(cloud_env)
    assert res.images.shape[0] == 1
    assert paid(cloud_env) == 1 and st["replays"] >= 1
    assert len(st["jobs"]) == 1 and res.request_id in st["jobs"]


@pytest.mark.parametrize("kind,exc,text", [
    ("moderated", E.Moderated, "rejected by moderation"),
    ("failed", E.JobFailed, "failed: GPU fell over"),
])
def test_job_outcomes(cloud_env, kind, exc, text):
    faults(cloud_env, {"kind": kind, "path": ROUTE, "reason": "GPU fell over"})
    with pytest.raises(exc, match=text):
        gen()
    from soulid.backends.ledger import Ledger

    row = Ledger().list(1)[0]
    assert row.state == kind and paid(cloud_env) == 1


@pytest.mark.parametrize("kind,exc,text", [
    ("expired", media.ResultExpired, "expired"),
    ("redirect_private", media.UnsafeURL, r"private or non-global address \(10.20.30.40\)"),
    ("wrong_type", media.MediaError, "unexpected content type 'text/html'"),
])
def test_result_download_faults(cloud_env, kind, exc, text):
    faults(cloud_env, {"kind": kind, "path": ROUTE})
    with pytest.raises(exc, match=text):
        gen()


def test_truncated_download_is_retried_then_refused(cloud_env):
    faults(cloud_env, {"kind": "truncated", "path": ROUTE, "times": 1})
    res = gen(seed=1)
    assert res.images.shape == (1, 1024, 1024, 3)
    faults(cloud_env, {"kind": "truncated", "path": ROUTE, "times": 10})
    with pytest.raises(media.MediaError, match="truncated"):
        gen(seed=2)


def test_status_url_off_the_api_host_is_refused(cloud_env):
    faults(cloud_env, {"kind": "foreign_status_url", "path": ROUTE})
    with pytest.raises(media.UnsafeURL, match="not on the configured API host"):
        gen()
    from soulid.backends.ledger import Ledger

    row = Ledger().list(1)[0]
    assert row.state == "bad_response" and "not on the configured API host" in row.error  # never left "submitting"


def _server_has(s, state: str) -> bool:
    """The user's stop button: pressed once the server holds a job in ``state``."""
    return any(j["state"] == state for j in stats(s)["jobs"].values())


def test_interrupt_while_queued_cancels_at_the_provider(cloud_env):
    import httpx

    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 5.0, "run_s": 0.3})
    with pytest.raises(E.Interrupted, match="canceled"):
        get_backend("higgsfield").generate(GenerateRequest(prompt="x", seed=1),
                                           interrupt=lambda: _server_has(cloud_env, "queued"))
    st = stats(cloud_env)
    assert st["cancels"] == 1 and list(st["jobs"].values())[0]["state"] == "canceled"


def test_interrupt_while_running_stops_waiting_and_resumes_later(cloud_env):
    import httpx

    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 0.0, "run_s": 1.5})
    with pytest.raises(E.Interrupted, match="will be resumed") as ei:
        get_backend("higgsfield").generate(GenerateRequest(prompt="x", seed=1),
                                           interrupt=lambda: _server_has(cloud_env, "running"))
    rid = ei.value.request_id
    res = get_backend("higgsfield").generate(GenerateRequest(prompt="x", seed=1))
    assert res.request_id == rid and res.info["resumed"] is True
    assert stats(cloud_env)["paid"] == {"higgsfield-ai/soul/standard": 1}


def test_job_timeout_keeps_the_job_resumable(cloud_env):
    import httpx

    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 0.0, "run_s": 1.2})
    with pytest.raises(E.CloudTimeout, match="jobs resume"):
        gen(timeout_s=0.3)
    assert gen().info["resumed"] is True and paid(cloud_env) == 1


def test_twelve_jobs_with_a_cap_of_four_never_exceed_four_in_flight(cloud_env):
    be = get_backend("higgsfield", max_concurrency=4)
    results, errors = [], []

    def one(i):
        try:
            results.append(be.generate(GenerateRequest(prompt=f"job {i}", seed=i, quality="720p", aspect="1:1")))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    st = stats(cloud_env)
    assert not errors and len(results) == 12
    assert st["paid"]["higgsfield-ai/soul/standard"] == 12
    assert st["peak_in_flight"]["higgsfield"] == 4  # the cap was used, never exceeded
    assert st["concurrency_rejections"] == 0


def test_ssrf_guard_on_urls():
    for bad in ("http://169.254.169.254/latest/meta-data", "https://10.0.0.1/x.png", "https://192.168.1.2/x",
                "ftp://example.com/x", "http://127.0.0.1:9/x"):
        with pytest.raises(media.UnsafeURL):
            media.check_url(bad)
    assert media.check_url("http://127.0.0.1:9/x", allow_loopback=True)
    with pytest.raises(media.UnsafeURL, match="not on the configured API host"):
        media.check_url("http://127.0.0.1:9/x", allow_loopback=True, host="127.0.0.1:10")
