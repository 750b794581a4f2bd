"""Embedding spaces of the local methods, computing a missing embedding from
the Soul ID's own photos, the per-frame identity check of clips and the
``animate`` entry point of the local backend, on the real photo fixtures."""
from __future__ import annotations

import copy

import av
import numpy as np
import pytest

from soulid.backends.base import AnimateRequest
from soulid.backends.local import LocalBackend
from soulid.backends.local.embeddings import EmbeddingError, compute_identity, identity_embedding
from soulid.backends.local.identity_check import check_clip
from soulid.backends.local.i2v import frame_count, motion_prompt
from soulid.soul.analysis import get_analyzer
from soulid.soul.errors import ModelFilesMissing
from soulid.soul.imageio import load_photo
from soulid.soul.soulfile import SoulID

import local_tiny_models as tiny


class Buffalo:
    """A buffalo_l-space analyzer for the test: dlib's detector and keypoints,
    with dlib's 128-d descriptor projected to 512-d by a fixed random matrix
    (insightface packs cannot be downloaded here). Same person -> similar vector."""

    name = "insightface_buffalo_l"
    model_id = "insightface/buffalo_l"
    embedding_dim = 512
    default_threshold = 0.4

    def __init__(self):
        self.dlib = get_analyzer("dlib")
        self.proj = np.random.default_rng(0).normal(size=(128, 512)).astype(np.float32)
        self.calls = 0

    def largest_face(self, rgb):
        self.calls += 1
        f = self.dlib.largest_face(rgb)
        if f is None:
            return None
        raw = f.embedding @ self.proj
        f = copy.copy(f)
        f.embedding_norm = float(np.linalg.norm(raw))
        f.embedding = raw / f.embedding_norm
        return f


@pytest.fixture(scope="module")
def kit(faces):
    return tiny.soul_with_embeddings(faces)


def test_compute_missing_embedding_and_cache_it_into_the_file(kit, tmp_path):
    soul = copy.deepcopy(kit)
    del soul.analyzers["insightface_buffalo_l"]
    path = soul.save(tmp_path / "kit.soulid")
    az = Buffalo()
    v = identity_embedding(soul, "faceid_plusv2", analyzer=az, save_to=path)
    assert v.shape == (512,) and v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-5
    assert az.calls == len(soul.photos)
    back = SoulID.load(path)
    ident = back.analyzers["insightface_buffalo_l"]
    assert ident.model_id == "insightface/buffalo_l" and ident.embeddings.shape == (len(soul.photos), 512)
    # Cached: a second call computes nothing.
    v2 = identity_embedding(back, "faceid_plusv2", analyzer=az)
    assert az.calls == len(soul.photos)
    np.testing.assert_allclose(v, v2, atol=1e-6)


def test_spaces_are_never_mixed(kit):
    # InstantID wants the raw antelopev2 vector (norm ~ the stored raw norms),
    # FaceID the unit buffalo_l one: different analyzers of the Soul ID.
    raw = identity_embedding(kit, "instantid")
    unit = identity_embedding(kit, "faceid_plusv2")
    assert abs(np.linalg.norm(raw) - 22.0) < 1e-3 and abs(np.linalg.norm(unit) - 1.0) < 1e-5
    assert abs(float(raw @ unit)) / 22.0 < 0.5  # not the same vector rescaled
    soul = copy.deepcopy(kit)
    del soul.analyzers["insightface"]
    with pytest.raises(EmbeddingError, match="another embedding space"):
        identity_embedding(soul, "instantid", analyzer=Buffalo())
    soul.analyzers["insightface"] = copy.deepcopy(kit.analyzers["insightface_buffalo_l"])
    soul.analyzers["insightface"].name = "insightface"
    with pytest.raises(EmbeddingError, match="needs 'insightface/antelopev2'"):
        identity_embedding(soul, "instantid")


def test_no_face_in_stored_photos_is_a_clear_error(kit):
    soul = copy.deepcopy(kit)
    del soul.analyzers["insightface_buffalo_l"]
    blank = copy.deepcopy(soul.photos[0])
    from soulid.soul.imageio import encode_jpeg

    blank.jpeg = encode_jpeg(np.full((64, 64, 3), 128, np.uint8))
    soul.photos = [blank]
    with pytest.raises(EmbeddingError, match="found no face in its 1 stored photo"):
        identity_embedding(soul, "faceid_plusv2", analyzer=Buffalo())


@pytest.fixture(scope="module")
def kit_dlib(faces, kit):
    soul = copy.deepcopy(kit)
    soul.analyzers = {"dlib": compute_identity(soul, get_analyzer("dlib"))}
    return soul


def test_identity_check_of_clips(kit_dlib, faces, tmp_path):
    b = LocalBackend()
    same = load_photo(faces / "kit_harington" / "kit3.jpg").rgb
    other = load_photo(faces / "biden" / "biden2.jpg").rgb
    r1 = b.animate(AnimateRequest(same, motions=[("zoom_in", 1.0)], seconds=1, fps=12, size=(320, 240),
                                  soul=kit_dlib, options={"out": str(tmp_path / "same.mp4"), "check_identity": True}))
    idn = r1.info["identity"]
    assert idn["frames"] == 2 and idn["no_face"] == 0 and idn["same_person"] is True
    assert idn["min"] <= idn["mean"] and idn["min"] > idn["threshold"]
    r2 = check_clip(b.animate(AnimateRequest(other, motions=[("static", 1.0)], seconds=1, fps=12, size=(240, 320),
                                             options={"out": str(tmp_path / "other.mp4")})).path, kit_dlib, stride=4)
    assert r2.same_person is False and r2.mean < idn["mean"] - 0.1
    assert len(r2.frames) == 3


def test_animate_camera_result_and_focus(kit, faces, tmp_path):
    img = load_photo(faces / "obama" / "obama.jpg").rgb.astype(np.float32) / 255
    r = LocalBackend().animate(AnimateRequest(img, motions=[("crash_zoom", 0.7)], seconds=2, fps=24, size=(256, 256),
                                              options={"out": str(tmp_path / "c.mp4")}))
    assert (r.frames, r.fps, r.width, r.height) == (48, 24.0, 256, 256) and r.path.exists()
    with av.open(str(r.path)) as c:
        last = list(c.decode(video=0))[-1].to_ndarray(format="rgb24")
    # The zoom goes towards the detected face (obama.jpg's face is above the
    # centre): the face is still in the last, 2.1x zoomed, frame.
    assert get_analyzer("dlib").largest_face(last) is not None


def test_i2v_needs_its_model_folder_and_words_the_motion(tmp_path, monkeypatch):
    monkeypatch.setenv("SOULID_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(ModelFilesMissing, match="Wan2.2-TI2V-5B-Diffusers/model_index.json"):
        LocalBackend().animate(AnimateRequest(np.zeros((64, 64, 3), np.float32), motions=[("pan_left", 1.0)],
                                              options={"engine": "i2v"}))
    p = motion_prompt("a woman on a beach", [("orbit", 1.0), ("zoom_in", 0.3)])
    assert p.startswith("a woman on a beach, pronounced the camera orbits") and "subtle slow smooth zoom in" in p
    assert frame_count(5, 24) == 121 and (frame_count(3, 16) - 1) % 4 == 0
