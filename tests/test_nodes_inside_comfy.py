"""How the nodes behave inside ComfyUI: no diffusion stack, no leaks, no
mutated inputs, closed HTTP clients, budgets over all attempts, results on the
node, readable error names.

Needs ComfyUI (``$COMFYUI_PATH`` naming a checkout, or ``comfy_api``
importable); skipped otherwise, saying why. The diffusers check runs in a
child interpreter so that nothing this test process imported counts.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from comfy_host import import_comfy_or_skip, run_node, shown

REPO = Path(__file__).resolve().parent.parent


import_comfy_or_skip()

import torch  # noqa: E402

from soulid.nodes.convert import np_to_image  # noqa: E402
from standin.fixtures import *  # noqa: E402,F401,F403
from standin.fixtures import stats  # noqa: E402





def _photo(faces, name="obama/obama2.jpg") -> torch.Tensor:
    from soulid.soul.imageio import load_photo

    return np_to_image(load_photo(faces / name).rgb)


# ------------------------------------------------ no second model stack
#: Runs every node's non-cloud path in a fresh interpreter with ComfyUI
#: loaded, then prints which heavy modules got imported.
_NO_DIFFUSERS = r"""
import asyncio, inspect, json, os, sys, tempfile
sys.path.append(os.environ["COMFYUI_PATH"])
from comfy.cli_args import args
args.cpu = True
import folder_paths
tmp = tempfile.mkdtemp()
folder_paths.set_input_directory(tmp)
folder_paths.set_user_directory(tmp)
from soulid.nodes import all_nodes
nodes = {c.GET_SCHEMA().node_id: c for c in all_nodes()}
from soulid.nodes.convert import np_to_image
from soulid.soul.imageio import load_photo
faces = os.environ["FACES"]
def run(node_id, **kw):
    out = nodes[node_id].execute(**kw)
    return asyncio.run(out) if inspect.isawaitable(out) else out
imgs = [np_to_image(load_photo(os.path.join(faces, "obama", n)).rgb) for n in ("obama.jpg", "obama2.jpg", "obama4.jpg")]
import torch
from soulid.soul.imageio import downscale
small = [np_to_image(downscale(load_photo(os.path.join(faces, "obama", n)).rgb, 384)) for n in ("obama.jpg", "obama2.jpg", "obama4.jpg")]
hw = min(i.shape[1] for i in small), min(i.shape[2] for i in small)
batch = torch.cat([i[:, :hw[0], :hw[1]] for i in small])
soul = run("SoulIDCreate", name="child", folder="", analyzer="dlib", max_photos=80, images=batch).args[0]
run("SoulIDSave", soul_id=soul, name="", overwrite=True)
run("SoulIDLoad", name="child")
run("SoulIDScore", soul_id=soul, images=batch)
preset = run("SoulIDStylePreset", family="auto", style="Realistic", strength=1.0).args[0]
motions = run("SoulIDMotionPreset", motion="dolly_in", strength=0.5).args[0]
run("SoulIDDriftGuard", soul_id=soul, mode="report", max_frames=4, n=2, stop_at_first_pass=True, backend="none",
    seed=1, aspect="3:4", max_usd=0.0, images=batch)
run("SoulIDDriftGuard", soul_id=soul, mode="best_of_n", max_frames=4, n=2, stop_at_first_pass=True, backend="none",
    seed=1, aspect="3:4", max_usd=0.0, images=batch)
run("SoulIDMoodboard", images=batch, first_seed=1, columns=0, tile=128, soul_id=soul)
run("SoulIDCharacterLog", soul_id=soul, score_image=True, save_to_library=False, image=batch[:1], prompt="p")
run("SoulIDDoPAnimate", backend="local", image=imgs[1], prompt="", motion_1="", motion_1_strength=0.5, motion_2="",
    motion_2_strength=0.5, model="dop-turbo", seed=0, seconds=1.0, fps=8, max_usd=0.0, motions=motions)
heavy = ["diffusers", "transformers", "peft", "insightface", "onnxruntime", "soulid.backends.local.pipelines",
         "soulid.backends.local.i2v", "soulid.backends.local.instantid"]
print(json.dumps({"ran": sorted(nodes), "imported": [m for m in heavy if m in sys.modules]}))
"""


def test_no_node_path_imports_diffusers_or_loads_a_pipeline(faces):
    root = os.environ.get("COMFYUI_PATH")
    if not root:
        pytest.skip("COMFYUI_PATH is not set: the child interpreter needs a ComfyUI checkout")
    env = {**os.environ, "FACES": str(faces), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    r = subprocess.run([sys.executable, "-c", _NO_DIFFUSERS], capture_output=True, text=True, timeout=600, env=env,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["imported"] == [], f"imported inside ComfyUI: {out['imported']}"
    assert "SoulIDDoPAnimate" in out["ran"]


def test_local_is_not_a_generation_backend_inside_comfyui():
    from soulid.nodes.animate import DoPAnimate
    from soulid.nodes.generate import SoulEdit, SoulGenerate
    from soulid.nodes.guard import DriftGuardNode
    from soulid.nodes.idphoto import IDPhotoSheetNode

    for node in (SoulGenerate, SoulEdit, IDPhotoSheetNode, DriftGuardNode):
        opts = node.GET_NODE_INFO_V1()["input"]["required"]["backend"]
        opts = opts[1].get("options") if opts[0] == "COMBO" else opts[0]
        assert "local" not in opts, node
    assert "local" in DoPAnimate.GET_NODE_INFO_V1()["input"]["required"]["backend"][1]["options"]  # camera engine


# ------------------------------------------------------ resources, inputs
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_local_animate_leaves_no_temp_file_or_descriptor(faces):
    from soulid.nodes.animate import DoPAnimate

    tmpdir = Path(tempfile.gettempdir())
    img = _photo(faces)
    kw = dict(backend="local", image=img, prompt="", motion_1="dolly_in", motion_1_strength=0.6, motion_2="",
              motion_2_strength=0.5, model="dop-turbo", seed=0, seconds=1.0, fps=8, max_usd=0.0)
    run_node(DoPAnimate, **kw)  # warm up lazy imports (PyAV, OpenCV) before counting
    files0, fds0 = set(tmpdir.iterdir()), _open_fds()
    for _ in range(3):
        video = run_node(DoPAnimate, **kw).args[0]
        w, h = video.get_dimensions()
        assert w > 0 and h > 0 and video.get_duration() > 0.5
        del video
    left = {p for p in set(tmpdir.iterdir()) - files0 if "soulid" in p.name}
    assert left == set(), f"temp files left behind: {sorted(p.name for p in left)}"
    assert _open_fds() <= fds0, f"descriptors: {fds0} before, {_open_fds()} after"


def test_character_log_does_not_mutate_its_input(obama, faces):
    from soulid.nodes.charlog import CharacterLogNode

    import copy

    before = copy.deepcopy(obama.log)
    out = run_node(CharacterLogNode, soul_id=obama, score_image=True, save_to_library=False, image=_photo(faces),
              prompt="on a boat", seed=3)
    assert obama.log == before == []  # the upstream Soul ID got no entry
    assert len(out.args[0].log) == 1
    assert out.args[0] is not obama and "on a boat" in out.args[1]
    assert "on a boat" in shown(out)["text"][0]  # the log is shown on the node


def test_cloud_nodes_close_their_http_clients(trained_obama, cloud_env, monkeypatch):
    import httpx

    from soulid.nodes.generate import SoulGenerate

    opened, closed = [], []
    real_init, real_close = httpx.Client.__init__, httpx.Client.close

    def init(self, *a, **k):
        opened.append(self)
        real_init(self, *a, **k)

    def close(self):
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(httpx.Client, "__init__", init)
    monkeypatch.setattr(httpx.Client, "close", close)
    run_node(SoulGenerate, backend="higgsfield", soul_id=trained_obama, prompt="x", style="", aspect_ratio="3:4",
        quality="720p", batch_size="1", seed=5, enhance_prompt=False, model_version="auto", max_usd=0.0)
    assert opened and all(c in closed for c in opened), f"{len(opened)} opened, {len(closed)} closed"


# -------------------------------------------------------------- money
GEN = dict(style="", aspect_ratio="3:4", quality="720p", batch_size="1", enhance_prompt=False, model_version="auto")


def test_generate_pays_once_per_seed_and_shows_the_estimate(trained_obama, cloud_env):
    from soulid.nodes.generate import SoulGenerate

    first = run_node(SoulGenerate, backend="higgsfield", soul_id=trained_obama, prompt="cafe", seed=7, max_usd=1.0, **GEN)
    again = run_node(SoulGenerate, backend="higgsfield", soul_id=trained_obama, prompt="cafe", seed=7, max_usd=1.0, **GEN)
    paid = stats(cloud_env)["paid"]
    assert again.args[1] == first.args[1] and sum(paid.values()) == 2  # training + one generation
    text = shown(first)["text"][0]
    cost = json.loads(first.args[2])
    assert f"${cost['usd']:.2f} estimated" in text
    run_node(SoulGenerate, backend="higgsfield", soul_id=trained_obama, prompt="cafe", seed=8, max_usd=1.0, **GEN)
    assert sum(stats(cloud_env)["paid"].values()) == 3  # a new seed pays again
    run_node(SoulGenerate, backend="higgsfield", soul_id=trained_obama, prompt="cafe", seed=8, max_usd=1.0, new_run=True,
        **GEN)
    assert sum(stats(cloud_env)["paid"].values()) == 4  # so does new_run


def test_best_of_n_stops_before_going_over_max_usd(trained_obama, cloud_env):
    """Each candidate is estimated at $0.xx; a budget for two stops at two
    even though none passes (the stand-in's gradients hold a face each, so
    the guard is made to fail with an impossible threshold)."""
    from soulid.backends.base import GenerateRequest, get_backend
    from soulid.nodes.guard import DriftGuardNode

    soul = trained_obama
    for a in soul.analyzers.values() if isinstance(soul.analyzers, dict) else soul.analyzers:
        a.threshold = 1.01  # nothing passes: best-of-N would use all N
    with get_backend("higgsfield") as be:
        est = be.generate(GenerateRequest(prompt="portrait", soul=soul, aspect="3:4", seed=200,
                                          options={"estimate_only": True}), None, None).cost
    paid0 = sum(stats(cloud_env)["paid"].values())
    budget_for_two = 2 * float(est["usd"]) + 0.001
    out = run_node(DriftGuardNode, soul_id=soul, mode="best_of_n", max_frames=4, n=6, stop_at_first_pass=True,
              backend="higgsfield", seed=200, aspect="3:4", max_usd=budget_for_two, prompt="portrait")
    paid = sum(stats(cloud_env)["paid"].values()) - paid0
    assert paid == 2, shown(out)["text"][0]
    assert "allows 2 of 6" in shown(out)["text"][0]
    assert not out.args[2]  # none passed


def test_id_sheet_refuses_a_budget_below_four_views_before_paying(trained_obama, cloud_env):
    from soulid.nodes.cloud import BudgetExhausted
    from soulid.nodes.idphoto import IDPhotoSheetNode

    paid0 = sum(stats(cloud_env)["paid"].values())
    with pytest.raises(BudgetExhausted, match="does not cover the 4 views|above max_usd"):
        run_node(IDPhotoSheetNode, soul_id=trained_obama, backend="higgsfield", seed=3, max_usd=0.01)
    assert sum(stats(cloud_env)["paid"].values()) == paid0
    out = run_node(IDPhotoSheetNode, soul_id=trained_obama, backend="higgsfield", seed=3, max_usd=5.0)
    assert sum(stats(cloud_env)["paid"].values()) == paid0 + 4
    assert tuple(out.args[1].shape[:1]) == (4,) and "images" in shown(out) and "paid attempt" in shown(out)["text"][0]


def test_budget_refuses_the_attempt_that_would_go_over():
    from soulid.nodes.cloud import Budget, BudgetedBackend, BudgetExhausted

    class Fake:
        name = "fake"
        calls = []

        def generate(self, req, progress=None, interrupt=None):
            # What the engine does before a new paid submit: reserve the estimate.
            budget = req.options["budget"]
            self.calls.append(budget.remaining)
            budget.reserve(0.4, "fake job")
            return type("R", (), {"cost": {"usd": 0.4}, "images": np.zeros((1, 2, 2, 3), np.float32)})()

    from soulid.backends.base import GenerateRequest

    b = Budget(1.0)
    be = BudgetedBackend(Fake(), b)
    be.generate(GenerateRequest(prompt=""))
    be.generate(GenerateRequest(prompt=""))
    with pytest.raises(BudgetExhausted, match="not submitted"):
        be.generate(GenerateRequest(prompt=""))
    assert Fake.calls == [1.0, pytest.approx(0.6)] and b.spent == pytest.approx(0.8)


def test_error_names_read_cleanly_under_a_mangled_module_name():
    """ComfyUI imports the pack as ``/path/custom_nodes/soulid``; our errors
    still read ``soulid.soul.errors.X``."""
    code = r"""
import importlib.util, os, sys
sys.path.append(os.environ["COMFYUI_PATH"])
from comfy.cli_args import args
args.cpu = True
path = os.environ["PACK"]
name = path.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"))
mod = importlib.util.module_from_spec(spec); sys.modules[name] = mod; spec.loader.exec_module(mod)
import asyncio
ext = asyncio.run(mod.comfy_entrypoint())
asyncio.run(ext.get_node_list())
errors = sys.modules[name + ".soul.errors"]
import execution
print(execution.full_type_name(errors.NoUsablePhotos))
"""
    root = os.environ.get("COMFYUI_PATH")
    if not root:
        pytest.skip("COMFYUI_PATH is not set")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PACK": str(REPO)}, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "soulid.soul.errors.NoUsablePhotos"
