"""Soul Generate / Soul Edit / Soul ID Train / DoP Animate nodes run
in-process against the stand-in, ComfyUI's interrupt, and the shipped cloud
workflows checked against the node schemas.

Needs ComfyUI's ``comfy_api`` (importable, or the checkout named by
``$COMFYUI_PATH``); skipped otherwise, saying why.
"""
from __future__ import annotations

import json
import os
import sys
import threading

import numpy as np
import pytest

from comfy_host import import_comfy_or_skip, run_node


import_comfy_or_skip()

import comfy.model_management  # noqa: E402
import torch  # noqa: E402

from soulid.nodes.animate import DoPAnimate, motion_pairs  # noqa: E402
from soulid.nodes.convert import np_to_image  # noqa: E402
from soulid.nodes.generate import SoulEdit, SoulGenerate, SoulIDTrain  # noqa: E402
from standin.fixtures import *  # noqa: E402,F401,F403
from standin.fixtures import stats  # noqa: E402
from workflow_check import check_api_prompt, check_ui_workflow, load_core_snapshot, schemas_from_nodes, ui_template, ui_to_api  # noqa: E402

GEN_DEFAULTS = dict(style="", aspect_ratio="3:4", quality="720p", batch_size="1", seed=11, enhance_prompt=False,
                    model_version="auto", max_usd=0.0)



def _photo(faces, name="obama/obama2.jpg") -> torch.Tensor:
    from soulid.soul.imageio import load_photo

    return np_to_image(load_photo(faces / name).rgb)


def test_train_then_generate_nodes(obama, cloud_env):
    from soulid.soul.library import Library

    Library().save(obama)
    soul, rid = run_node(SoulIDTrain, soul_id=obama, provider="higgsfield", model_version="v1",
                                    save_to_library=True).args
    assert obama.remote("higgsfield") is None  # the upstream object is not mutated
    assert soul.remote("higgsfield", "v1").id == rid == Library().load("obama").remote("higgsfield").id
    again = run_node(SoulIDTrain, soul_id=soul, provider="higgsfield", model_version="v1", save_to_library=False)
    assert again.args[1] == rid and stats(cloud_env)["paid"] == {"/v1/custom-references": 1}

    images, request_id, cost = run_node(SoulGenerate, backend="higgsfield", soul_id=soul, prompt="on a boat",
                                                    **{**GEN_DEFAULTS, "batch_size": "4", "max_usd": 1.0}).args
    assert images.dtype == torch.float32 and tuple(images.shape) == (4, 1365, 1024, 3)  # 1536x2048 at 720p
    assert json.loads(cost) == {"credits": 8.0, "usd": 0.5} and request_id in stats(cloud_env)["jobs"]


def test_edit_and_animate_nodes(trained_obama, cloud_env, faces):
    images, rid, _ = run_node(SoulEdit, backend="wavespeed", image=_photo(faces), prompt="noir", soul_id=trained_obama,
                                      strength=0.4, quality="1080p", seed=3, style="", max_usd=0.0).args
    assert images.shape[0] == 1 and rid
    video, rid, _ = run_node(DoPAnimate, backend="higgsfield", image=_photo(faces), prompt="smile",
                                       motion_1="Dolly In", motion_1_strength=0.7, motion_2="", motion_2_strength=0.5,
                                       model="dop-turbo", seed=1, seconds=5.0, fps=24,
                                       max_usd=0.0).args
    w, h = video.get_dimensions()
    assert w > 0 and h > 0 and abs(video.get_duration() - 5.0) < 0.2
    assert stats(cloud_env)["paid"]["/v1/image2video/dop"] == 1


def test_motion_pairs_cap_at_two():
    from soulid.soul.motions import get_motion

    assert motion_pairs([get_motion("dolly_in", 0.7)], "Handheld", 0.2, "", 0.5)[1] == ("Handheld", 0.2)
    with pytest.raises(ValueError, match="at most two motions"):
        motion_pairs([get_motion("dolly_in")], "a", 0.1, "b", 0.2)


def test_comfy_interrupt_cancels_a_queued_cloud_job(cloud_env):
    import httpx

    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 10.0})
    def press_stop_once_queued():  # the user presses Cancel while the job waits in the provider's queue
        for _ in range(400):
            if any(j["state"] == "queued" for j in stats(cloud_env)["jobs"].values()):
                break
            threading.Event().wait(0.025)
        comfy.model_management.interrupt_current_processing(True)

    t = threading.Thread(target=press_stop_once_queued)
    t.start()
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_node(SoulGenerate, backend="higgsfield", soul_id=None, prompt="x", **GEN_DEFAULTS)
    finally:
        t.join()
        comfy.model_management.interrupt_current_processing(False)
    assert stats(cloud_env)["cancels"] == 1


@pytest.mark.parametrize("name", ["soul_generate_cloud", "soul_edit_cloud", "dop_animate_cloud"])
def test_cloud_workflows_fit_the_node_schemas(name):
    from pathlib import Path

    from soulid.nodes import all_nodes

    schemas = {**load_core_snapshot(), **schemas_from_nodes(all_nodes())}
    wf = json.loads(ui_template(name).read_text())
    assert check_ui_workflow(wf, schemas) == []
    assert check_api_prompt(ui_to_api(wf, schemas), schemas) == []
    text = json.dumps(wf)
    assert "HF_KEY" in text  # the note tells where credentials go; no key widget exists
    for n in wf["nodes"]:
        schema = schemas.get(n["type"], {})
        names = {k for sec in schema.get("input", {}).values() for k in sec}
        assert not any(w in k for k in names for w in ("key", "secret", "token"))


def test_create_node_trains_remotely(cloud_env, faces):
    from soulid.nodes.identity import SoulIDCreate

    batch = torch.cat([_photo(faces, "obama/obama.jpg")] * 1)
    soul, sheet, report = SoulIDCreate.execute(name="obama_cloud", folder="", analyzer="dlib", max_photos=80,
                                               train_remote="higgsfield", model_version="v1", images=batch).args
    rid = soul.remote("higgsfield", "v1")
    assert rid is not None and rid.id
    assert stats(cloud_env)["paid"] == {"/v1/custom-references": 1}
    off, _, _ = SoulIDCreate.execute(name="obama_local", folder="", analyzer="dlib", max_photos=80,
                                     train_remote="none", model_version="v2", images=batch).args
    assert off.remote_ids == [] and stats(cloud_env)["paid"] == {"/v1/custom-references": 1}
