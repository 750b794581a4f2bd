"""Fidelity of the stand-in: the official ``higgsfield-client`` SDK
(https://github.com/higgsfield-ai/higgsfield-client, PyPI ``higgsfield-client``)
submits, polls, reads results and uploads against it unchanged."""
from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import faults, stats
from standin.server import KEY_ID, KEY_SECRET

hf = pytest.importorskip("higgsfield_client")


def test_sdk_submit_poll_result_and_upload(standin, faces):
    client = hf.SyncClient(base_url=standin.url, api_key=f"{KEY_ID}:{KEY_SECRET}")
    url = client.upload_file(faces / "obama" / "obama.jpg")
    assert url.startswith(standin.url + "/cdn/")
    ctl = client.submit("higgsfield-ai/soul/standard",
                        {"prompt": "a portrait", "width_and_height": "1536x1536", "quality": "720p",
                         "batch_size": 1, "image_reference": url, "seed": 5})
    seen = [type(s).__name__ for s in ctl.poll_request_status(delay=0.05)]
    assert seen[-1] == "Completed" and {"Queued", "InProgress"} & set(seen)
    result = ctl.get()
    assert result["status"] == "completed" and result["request_id"] == ctl.request_id
    img = Image.open(io.BytesIO(httpx.get(result["images"][0]["url"]).content))
    assert img.size == (1024, 1024)
    st = stats(standin)
    assert st["paid"] == {"higgsfield-ai/soul/standard": 1} and st["auth_leaks"] == 0


def test_sdk_sees_nsfw_cancel_and_validation_errors(standin):
    client = hf.SyncClient(base_url=standin.url, api_key=f"{KEY_ID}:{KEY_SECRET}")
    faults(standin, {"kind": "moderated", "path": "/higgsfield-ai/soul/standard"})
    ctl = client.submit("higgsfield-ai/soul/standard", {"prompt": "x"})
    assert isinstance(list(ctl.poll_request_status(delay=0.05))[-1], hf.NSFW)
    httpx.post(standin.url + "/_standin/config", json={"queue_s": 5.0})
    ctl = client.submit("higgsfield-ai/soul/standard", {"prompt": "y"})
    ctl.cancel()
    assert isinstance(ctl.status(), hf.Cancelled)
    with pytest.raises(hf.HiggsfieldClientError, match="width_and_height"):
        client.submit("higgsfield-ai/soul/standard", {"prompt": "z", "width_and_height": "100x100"})
    bad = hf.SyncClient(base_url=standin.url, api_key="nope:nope")
    with pytest.raises(hf.HiggsfieldClientError, match="Invalid credentials"):
        bad.submit("higgsfield-ai/soul/standard", {"prompt": "z"})
