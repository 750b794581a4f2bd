"""The cloud engine under threads, processes, hostile answers and leaks
(issues 9, 12 and 13), against the stand-in over real HTTP on 127.0.0.1.

The generic Soul route (no Soul ID) keeps most of these fast; what is asserted
is the engine's behaviour and the stand-in's counters (paid submits, peak in
flight, replays).
"""
from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from soulid.backends import engine as E
from soulid.backends import media
from soulid.backends.base import AnimateRequest, GenerateRequest, get_backend
from soulid.backends.ledger import Ledger
from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import SECRETS, faults, stats
from standin.server import KEY_ID, KEY_SECRET, STYLES_V1, STYLES_V2

REPO = Path(__file__).resolve().parent.parent
ROUTE = "higgsfield-ai/soul/standard"


def req(seed=1, **options) -> GenerateRequest:
    return GenerateRequest(prompt="a lighthouse", seed=seed, quality="720p", aspect="1:1", options=options)


def paid(s, route=ROUTE) -> int:
    return stats(s)["paid"].get(route, 0)


def cli(*args, cwd=None, env=None, check=False, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soulid", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO.parent, env=env or os.environ.copy(), timeout=timeout)


# ------------------------------------------------------------ threads (issue 9)
def test_threads_share_one_backend_run_side_by_side_and_the_cap_holds(cloud_env):
    """As ComfyUI's async nodes will: ``await asyncio.to_thread(backend.generate, ...)``
    on ONE backend. Three jobs take about one job's time; six never exceed the
    cap of 4 in flight (the engine holds them back, the provider never refuses)."""
    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 0.5, "run_s": 0.5})
    be = get_backend("higgsfield")
    t0 = time.monotonic()
    be.generate(req(seed=100))
    one = time.monotonic() - t0

    async def many(seeds):
        return await asyncio.gather(*(asyncio.to_thread(be.generate, req(seed=s)) for s in seeds))

    t0 = time.monotonic()
    three = asyncio.run(many([1, 2, 3]))
    wall3 = time.monotonic() - t0
    assert [r.images.shape[0] for r in three] == [1, 1, 1]
    assert len({r.request_id for r in three}) == 3
    assert wall3 < 1.6 * one, f"3 jobs in threads took {wall3:.2f}s, one job {one:.2f}s: they did not overlap"

    httpx.post(cloud_env.url + "/_standin/reset")
    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 0.5, "run_s": 0.5, "cap": 4})
    six = asyncio.run(many([11, 12, 13, 14, 15, 16]))
    st = stats(cloud_env)
    assert len({r.request_id for r in six}) == 6 and paid(cloud_env) == 6
    assert st["peak_in_flight"]["higgsfield"] == 4  # side by side up to the cap, never above it
    assert st["concurrency_rejections"] == 0
    be.close()


def test_same_request_from_two_threads_pays_once(cloud_env):
    be = get_backend("higgsfield")

    async def twice():
        return await asyncio.gather(asyncio.to_thread(be.generate, req(seed=7)),
                                    asyncio.to_thread(be.generate, req(seed=7)))

    a, b = asyncio.run(twice())
    assert a.request_id == b.request_id and paid(cloud_env) == 1
    assert sorted([a.info["resumed"], b.info["resumed"]]) == [False, True]
    be.close()


# ------------------------------------------------------------------- budget
def test_budget_is_shared_by_several_jobs_and_stops_before_going_over(cloud_env):
    be = get_backend("higgsfield")
    budget = E.Budget(max_usd=0.30, label="best-of-3")  # each 720p image: 2 credits = $0.125
    be.generate(req(seed=1, budget=budget))
    be.generate(req(seed=2, budget=budget))
    assert budget.spent == pytest.approx(0.25) and paid(cloud_env) == 2
    with pytest.raises(E.CostLimit, match=r"best-of-3 to \$0.3750, above max_usd=\$0.3000 \(\$0.0500 left\)"):
        be.generate(req(seed=3, budget=budget))
    assert paid(cloud_env) == 2  # refused before any paid POST
    # a result reused from the ledger was paid before: it costs the budget nothing
    be.generate(req(seed=1, budget=budget))
    assert budget.spent == pytest.approx(0.25) and paid(cloud_env) == 2
    assert budget.summary() == {"max_usd": 0.3, "spent_usd": 0.25, "remaining_usd": pytest.approx(0.05), "jobs": 2}


def test_budget_refunds_a_refused_submit_and_refuses_jobs_without_estimate(cloud_env, trained_obama, faces):
    be = get_backend("higgsfield")
    budget = E.Budget(max_usd=0.2)
    faults(cloud_env, {"kind": "422", "path": "/" + ROUTE, "method": "POST"})
    with pytest.raises(E.ValidationFailed):
        be.generate(req(seed=5, budget=budget))
    assert budget.spent == 0  # the provider refused it: nothing was paid
    be.generate(req(seed=5, budget=budget))
    assert budget.spent == pytest.approx(0.125)
    # WaveSpeed gives no estimate: with a positive cap it cannot be checked, so it is refused
    from soulid.backends.base import EditRequest
    from soulid.soul.imageio import load_photo

    img = load_photo(faces / "obama" / "obama.jpg").rgb / 255.0
    ws = get_backend("wavespeed")
    with pytest.raises(E.CostLimit, match="no cost estimate"):
        ws.edit(EditRequest(image=img, prompt="x", soul=trained_obama, options={"budget": budget}))
    assert "/api/v3/higgsfield/soul/image-to-image" not in stats(cloud_env)["paid"]
    assert E.Budget(None).reserve(None, "x") == 0.0  # no cap: counted, never refused
    assert budget.reserve(None, "local run", free=True) == 0.0  # a 0-cost job passes
    for bad in (float("nan"), float("inf"), -1):
        with pytest.raises(media.InvalidNumber, match="max_usd must be a finite number >= 0"):
            E.Budget(bad)


# ------------------------------------------------------- malformed answers
@pytest.mark.parametrize("fault,field", [
    ({"kind": "html200"}, "text/html, not JSON"),
    ({"kind": "answer", "body": {"status": "queued", "status_url": "x"}}, "field 'request_id': Field required"),
    ({"kind": "answer", "body": [{"request_id": "r"}]}, "field '(the whole answer)'"),
    ({"kind": "answer", "body": {"request_id": "", "status_url": "x"}}, "field 'request_id'"),
])
def test_malformed_submit_answer_is_one_clear_error_and_the_row_says_so(cloud_env, fault, field):
    be = get_backend("higgsfield")
    faults(cloud_env, {**fault, "path": "/" + ROUTE, "method": "POST"})
    with pytest.raises(E.BadResponse, match=re_escape(field)) as ei:
        be.generate(req(seed=9))
    assert "submit" in str(ei.value)
    row = be.ledger.list(1)[0]
    assert row.state == "bad_response" and field.split(":")[0] in row.error
    # next time it is resent with the same Idempotency-Key and finishes
    res = be.generate(req(seed=9))
    assert res.images.shape[0] == 1 and paid(cloud_env) == 1
    assert be.ledger.list(1)[0].state == "succeeded"


def re_escape(t: str) -> str:
    import re

    return re.escape(t)


def test_unknown_status_raises_with_the_raw_value_and_resumes_later(cloud_env):
    be = get_backend("higgsfield")
    faults(cloud_env, {"kind": "answer", "path": "/requests/", "method": "GET", "body": {"status": "paused"}})
    with pytest.raises(E.BadResponse, match=r"field 'status': Input should be 'queued', .* \(got 'paused'\)"):
        be.generate(req(seed=4))
    row = be.ledger.list(1)[0]
    assert row.state == "bad_response" and row.request_id and "'paused'" in row.error
    res = be.generate(req(seed=4))
    assert res.request_id == row.request_id and paid(cloud_env) == 1


def test_malformed_answer_through_the_cli_is_one_line_not_a_traceback(cloud_env, tmp_path):
    faults(cloud_env, {"kind": "answer", "path": "/" + ROUTE, "method": "POST", "body": ["not", "an", "object"]})
    p = cli("generate", "--backend", "higgsfield", "--prompt", "x", "--quality", "720p", "--out", tmp_path)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "field '(the whole answer)'" in p.stderr, p.stderr
    rows = Ledger().list(1)
    assert rows[0].state == "bad_response"


# --------------------------------------------------------------- secrets
def test_redaction_holds_on_every_logger_of_the_pack_and_on_httpx(cloud_env):
    """A logger's filter does not see records propagated from its children:
    this fails when redaction is only a filter on ``soulid``."""
    get_backend("higgsfield")  # registers the key
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(h)
    levels = {}
    try:
        for name in ("soulid", "soulid.cloud", "soulid.nodes.x", "httpx", "httpcore"):
            lg = logging.getLogger(name)
            levels[name] = lg.level
            lg.setLevel(logging.DEBUG)
            lg.warning("headers: Authorization: Key %s:%s", KEY_ID, KEY_SECRET)
            lg.info(f"inline {KEY_SECRET} in the message")
            try:
                raise RuntimeError(f"server said {KEY_SECRET}")
            except RuntimeError:
                lg.exception("failed")
    finally:
        root.removeHandler(h)
        for name, lv in levels.items():
            logging.getLogger(name).setLevel(lv)
    text = buf.getvalue()
    assert "soulid.cloud headers" in text and "httpx inline" in text and "RuntimeError" in text
    for s in SECRETS[:2]:
        assert s not in text, f"{s[:4]}… leaked through logging"


def test_provider_error_echoing_the_key_leaves_no_trace(cloud_env, caplog, capsys, tmp_path):
    caplog.set_level(logging.DEBUG)
    be = get_backend("higgsfield")
    faults(cloud_env, {"kind": "echo_auth", "path": "/" + ROUTE, "method": "POST", "code": 422})
    with pytest.raises(E.ValidationFailed) as ei:
        be.generate(req(seed=12))
    row = be.ledger.list(1)[0]
    assert row.state == "failed" and "malformed request (received Authorization: Key" in row.error
    faults(cloud_env, {"kind": "echo_auth", "path": "/" + ROUTE, "method": "POST", "code": 400, "count": 5})
    p = cli("generate", "--backend", "higgsfield", "--prompt", "y", "--quality", "720p", "--out", tmp_path)
    assert p.returncode != 0 and "received Authorization" in p.stderr
    listing = cli("jobs", "list", "--json")
    listing_plain = cli("jobs", "list")
    assert "malformed request" in listing.stdout  # the haystack is real
    db = Path(os.environ["SOULID_DATA_DIR"]) / "jobs.sqlite3"
    blobs = [f.read_bytes().decode("latin-1") for f in db.parent.glob("jobs.sqlite3*")]
    out = capsys.readouterr()
    hay = "\n".join([str(ei.value), row.error, caplog.text, out.out, out.err, p.stdout, p.stderr,
                     listing.stdout, listing.stderr, listing_plain.stdout, *blobs])
    for s in (KEY_ID, KEY_SECRET):
        assert s not in hay, f"{s[:4]}… leaked"
    # private files: the ledger 0600 (and its WAL), the data folder 0700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for f in db.parent.glob("jobs.sqlite3-*"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f


# ------------------------------------------------------------- resources
def test_http_clients_are_closed_by_close_with_and_garbage_collection(cloud_env):
    with get_backend("higgsfield") as be:
        be.generate(req(seed=21))
        engines = list(be._engines.values())
        clients = [c for e in engines for c in (e.client, e.media_client)]
        assert clients and not any(c.is_closed for c in clients)
    assert all(c.is_closed for c in clients)

    be = get_backend("higgsfield")
    be.generate(req(seed=21))
    clients = [c for e in be._engines.values() for c in (e.client, e.media_client)]
    del be, engines
    gc.collect()
    assert all(c.is_closed for c in clients), "a dropped backend left HTTP clients open"


# ------------------------------------------------------------ downloads
def test_a_trickling_result_fails_at_its_deadline(cloud_env, monkeypatch):
    monkeypatch.setenv("SOULID_DOWNLOAD_TIMEOUT", "2")
    faults(cloud_env, {"kind": "trickle", "path": "/" + ROUTE, "method": "POST", "seconds": 0.5})
    be = get_backend("higgsfield")
    t0 = time.monotonic()
    with pytest.raises(media.MediaError, match="did not finish within its 2 s deadline"):
        be.generate(req(seed=31))
    assert time.monotonic() - t0 < 8
    results = Path(os.environ["SOULID_CACHE_DIR"]) / "results"
    assert not [p for p in results.rglob("*") if p.is_file()], "a partial download was left behind"


def test_downloads_stream_to_disk_in_bounded_memory_and_honour_the_size_cap(cloud_env, tmp_path):
    import tracemalloc

    big = b"\x89PNG\r\n\x1a\n" + bytes(40 << 20)  # 40 MiB that sniffs as PNG
    httpx.put(f"{cloud_env.url}/upload/big.png", content=big, headers={"Content-Type": "image/png"}).raise_for_status()
    url = f"{cloud_env.url}/cdn/big.png"
    with httpx.Client(timeout=10) as c:
        tracemalloc.start()
        try:
            got = media.download(c, url, tmp_path / "r", allow_loopback=True)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert got.stat().st_size == len(big) and got.suffix == ".png"
        assert peak < 8 << 20, f"download held {peak >> 20} MiB in memory"
        with pytest.raises(media.MediaError, match="over the 1048576 byte limit"):
            media.download(c, url, tmp_path / "s", allow_loopback=True, max_bytes=1 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.png"]  # no temp file left


# ------------------------------------------------------------- URL check
@pytest.mark.parametrize("url", [
    "https://100.100.100.200/latest/meta-data", "https://100.64.0.1/", "https://192.0.0.192/",
    "https://[2002:a9fe:a9fe::]/", "https://[64:ff9b::a9fe:a9fe]/", "https://[::ffff:169.254.169.254]/",
    "https://169.254.169.254/", "https://metadata.google.internal/", "https://10.1.2.3/", "https://0.0.0.0/",
    "https://[fd00::1]/", "https://198.18.0.1/", "http://127.0.0.1:9/x", "https://[::ffff:10.0.0.1]/",
])
def test_url_check_refuses_every_non_global_address(url):
    with pytest.raises(media.UnsafeURL):
        media.check_url(url)


def test_url_check_keeps_global_addresses_and_explicit_loopback():
    assert media.check_url("https://8.8.8.8/x") == "https://8.8.8.8/x"
    assert media.check_url("http://127.0.0.1:9/x", allow_loopback=True)
    assert media.check_url("https://[::ffff:127.0.0.1]/x", allow_loopback=True)
    with pytest.raises(media.UnsafeURL, match="link-local"):
        media.check_url("https://[::ffff:169.254.169.254]/", allow_loopback=True)


# --------------------------------------------------------- numeric options
def test_numeric_options_refuse_nan_inf_and_negatives(cloud_env, monkeypatch, tmp_path):
    be = get_backend("higgsfield")
    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(media.InvalidNumber, match="max_usd must be a finite number >= 0"):
            be.generate(req(seed=41, max_usd=bad))
        with pytest.raises(media.InvalidNumber, match="timeout_s must be a finite number > 0"):
            E.JobEngine(be.api, be.ledger, timeout_s=bad)
    monkeypatch.setenv("SOULID_JOB_TIMEOUT", "nan")
    with pytest.raises(media.InvalidNumber, match=r"\$SOULID_JOB_TIMEOUT must be a finite number > 0, not 'nan'"):
        get_backend("higgsfield").generate(req(seed=41))
    with pytest.raises(media.InvalidNumber, match="deadline"):
        media.download(httpx.Client(), "http://127.0.0.1:9/x", tmp_path / "x", allow_loopback=True,
                       deadline_s=float("inf"))
    assert paid(cloud_env) == 0
    monkeypatch.delenv("SOULID_JOB_TIMEOUT")
    p = cli("generate", "--backend", "higgsfield", "--prompt", "x", "--max-usd", "nan", "--out", tmp_path)
    assert p.returncode == 2 and "max_usd must be a finite number" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------- Soul styles
def test_style_ids_come_from_the_list_of_the_route_family(obama, cloud_env):
    """One resolver: a v1 style id never goes to the v2 route."""
    from soulid.backends.remote_training import train_remote
    from soulid.soul.presets import StylePreset

    train_remote(obama, "higgsfield", "v2")
    be = get_backend("higgsfield")
    v1 = {s["name"]: s["id"] for s in STYLES_V1}
    v2 = {s["name"]: s["id"] for s in STYLES_V2}
    # a Soul-family preset that knows only its v1 id gets the Soul 2 id on the v2 route
    p = StylePreset(name="Realistic", family="soul", remote_ids={"soul": v1["Realistic"]})
    be.generate(GenerateRequest(prompt="x", soul=obama, preset=p, quality="720p", seed=1))
    row = be.ledger.list(1)[0]
    assert row.endpoint == "higgsfield-ai/soul/v2/standard" and row.body["style_id"] == v2["Realistic"]
    with pytest.raises(E.ValidationFailed, match="is a soul style; model_version v2 takes soul_2 styles"):
        be.generate(GenerateRequest(prompt="x", soul=obama, preset=v1["Y2K"], quality="720p", seed=2))
    with pytest.raises(E.ValidationFailed, match="unknown style 'Y2K' in the soul_2 style list"):
        be.generate(GenerateRequest(prompt="x", soul=obama, preset="Y2K", quality="720p", seed=2))
    assert paid(cloud_env, "higgsfield-ai/soul/v2/standard") == 1


# ---------------------------------------------------------- AuraShot / keys
def test_aurashot_at_a_wrong_base_path_names_the_path_not_the_key(obama, cloud_env, monkeypatch):
    monkeypatch.setenv("SOULID_AURASHOT_URL", cloud_env.url)  # the shared root, not .../aurashot
    be = get_backend("aurashot")
    with pytest.raises(E.NotFound) as ei:
        be.generate(GenerateRequest(prompt="x", soul=obama))
    msg = str(ei.value)
    assert "has no /v1/upload" in msg and "$SOULID_AURASHOT_URL is the aurashot API root" in msg
    assert "API key" not in msg


def test_rejected_key_from_the_environment_says_so(cloud_env, monkeypatch):
    from soulid.backends.engine import JobSpec

    monkeypatch.setenv("AURASHOT_API_KEY", "wrong-aurashot-key-123")
    be = get_backend("aurashot")
    with pytest.raises(E.CredentialsRejected) as ei:
        be.run_job(be.api, JobSpec("/v1/id-photo", {"image_url": "u"}), {})
    msg = str(ei.value)
    assert "from the environment variable AURASHOT_API_KEY" in msg and "wrong-aurashot-key-123" not in msg
    assert "correct or unset that variable" in msg


# ------------------------------------------------------------ estimates
def test_training_estimate_is_available_before_any_upload(obama, cloud_env):
    from soulid.backends.remote_training import estimate_training, train_remote

    assert estimate_training(obama) is None  # Higgsfield publishes no training estimate
    msgs = []
    train_remote(obama, progress=lambda f, m: msgs.append(m))
    first_upload = next(i for i, m in enumerate(msgs) if "uploading" in m)
    assert any("no cost estimate offered" in m for m in msgs[:first_upload])


def test_generate_reports_its_estimate_before_uploading(cloud_env):
    msgs = []
    get_backend("higgsfield").generate(req(seed=51), progress=lambda f, m: msgs.append(m))
    assert msgs[0] == "higgsfield higgsfield-ai/soul/standard: estimate $0.1250 (2 credits)"


# ------------------------------------------------------------ file names
def test_no_file_name_comes_from_the_server(cloud_env, faces, tmp_path):
    """Request ids ``../x`` and ``/tmp/...`` write nothing outside the chosen
    folder, and a second clip never overwrites the first."""
    work = tmp_path / "work"
    work.mkdir()
    outside = "/tmp/rt" + str(os.getpid())[-1]
    for rid in ("../x", outside):
        faults(cloud_env, {"kind": "request_id", "path": "/api/v3/higgsfield/dop/image-to-video", "method": "POST",
                           "id": rid})
        p = cli("animate", faces / "obama" / "obama.jpg", "--backend", "wavespeed", "--json", "--new", cwd=work)
        assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path)) == ["_user", "work"]
    # Without --out, clips go to the per-user outputs folder, named after the photo, never overwritten.
    assert os.listdir(work) == []
    assert sorted(os.listdir(tmp_path / "_user" / "data" / "outputs")) == ["obama-1.mp4", "obama.mp4"]
    assert not Path(outside + ".mp4").exists() and not Path(outside[:8] + ".mp4").exists()
    assert media.safe_stem("../x") == "x" and media.safe_stem("/abs/x") == "abs_x"
    a = media.new_output_path(tmp_path / "o", "../../etc/passwd", ".png")
    b = media.new_output_path(tmp_path / "o", "../../etc/passwd", ".png")
    assert a.parent == b.parent == tmp_path / "o" and a != b


@pytest.mark.slow  # measured: 15-40 s on the 2-core CI machine (.ci/run --durations)
# ------------------------------------------------------- two processes
def test_two_identical_generate_processes_never_crash_and_pay_once(cloud_env, tmp_path):
    """2 processes x 10 rounds of the same ``soulid generate``: no crash, one
    paid POST per request, outputs under distinct names."""
    rounds = 10
    out = tmp_path / "out"
    for r in range(rounds):
        args = [sys.executable, "-m", "soulid", "generate", "--backend", "higgsfield", "--prompt", "twin",
                "--seed", str(1000 + r), "--quality", "720p", "--aspect", "1:1", "--out", str(out), "--json"]
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=REPO.parent) for _ in range(2)]
        res = [p.communicate(timeout=120) for p in procs]
        for p, (o, e) in zip(procs, res):
            assert p.returncode == 0, f"round {r}: {e}"
            assert "Traceback" not in e
        assert paid(cloud_env) == r + 1, f"round {r} paid twice"
    assert len(list(out.glob("*.png"))) == 2 * rounds  # no output overwrote another
    assert not list(out.glob(".*"))  # no temp file left
