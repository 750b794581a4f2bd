"""The three cloud backends and remote training, end to end over HTTP
against the stand-in, with a real Soul ID (Obama photos)."""
from __future__ import annotations

import numpy as np
import pytest

from soulid.backends.base import AnimateRequest, EditRequest, GenerateRequest, get_backend
from soulid.backends.engine import CostLimit, ValidationFailed
from soulid.soul.soulfile import SoulID
from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import faults, stats


def _photo(faces, name="obama/obama2.jpg") -> np.ndarray:
    from soulid.soul.imageio import load_photo

    return load_photo(faces / name).rgb.astype(np.float32) / 255.0


def test_training_uploads_only_accepted_photos_and_records_remote_id(obama, cloud_env, tmp_path):
    from soulid.backends.remote_training import delete_remote, list_remote, train_remote

    accepted = obama.photos_rated(("perfect", "good"))
    assert accepted, "fixture Soul ID must have accepted photos"
    obama.photos[0].rating = "poor"  # a rejected photo stays local
    accepted = obama.photos_rated(("perfect", "good"))
    rid = train_remote(obama, "higgsfield", "v2")
    st = stats(cloud_env)
    assert st["requests"]["PUT /upload/{id}"] == len(accepted)
    assert st["paid"] == {"/v1/custom-references": 1}
    assert st["references"][rid.id] == "v2"
    assert (rid.provider, rid.model_version) == ("higgsfield", "v2")
    back = SoulID.load(obama.save(tmp_path / "o.soulid"))
    assert back.remote("higgsfield", "v2").id == rid.id
    assert [r["id"] for r in list_remote()] == [rid.id]
    assert delete_remote(rid.id, soul=obama) is True
    assert obama.remote("higgsfield") is None and list_remote() == []
    assert delete_remote(rid.id) is False


def test_generate_with_trained_soul_returns_decoded_faces_of_that_person(trained_obama, cloud_env):
    from soulid.soul.score import score_images

    be = get_backend("higgsfield")
    res = be.generate(GenerateRequest(prompt="portrait in a cafe", soul=trained_obama, aspect="3:4", batch=4,
                                      seed=7, options={"max_usd": 2.0}))
    assert res.images.shape == (4, 2048, 1536, 3) and res.images.dtype == np.float32
    assert 0.0 <= res.images.min() and res.images.max() <= 1.0
    assert res.cost == {"credits": 12.0, "usd": 0.75}
    assert res.info["route"] == "higgsfield-ai/soul/character"
    # the stand-in pastes the trained reference photo: the decoded result shows Obama
    scores = score_images(trained_obama, [(im * 255).astype(np.uint8) for im in res.images[:1]])
    assert scores[0].same_person is True, scores[0]
    # same request again: nothing paid, nothing requested
    again = be.generate(GenerateRequest(prompt="portrait in a cafe", soul=trained_obama, aspect="3:4", batch=4,
                                        seed=7, options={"max_usd": 2.0}))
    assert again.request_id == res.request_id and again.info["requests"] == 0
    assert stats(cloud_env)["paid"]["higgsfield-ai/soul/character"] == 1


def test_untrained_or_mismatched_soul_is_refused_before_paying(obama, cloud_env):
    be = get_backend("higgsfield")
    with pytest.raises(ValidationFailed, match="no Higgsfield training"):
        be.generate(GenerateRequest(prompt="x", soul=obama))
    from soulid.backends.remote_training import train_remote

    train_remote(obama, "higgsfield", "v1")
    with pytest.raises(ValidationFailed, match="model_version v1, not 'cinema'"):
        be.generate(GenerateRequest(prompt="x", soul=obama, options={"model_version": "cinema"}))
    assert set(stats(cloud_env)["paid"]) == {"/v1/custom-references"}


def test_server_side_version_check_shows_validation_verbatim(obama, cloud_env):
    """A reference sent to another route is refused by the server (422), field message kept."""
    from soulid.backends.engine import JobSpec
    from soulid.backends.remote_training import train_remote

    rid = train_remote(obama, "higgsfield", "v1")
    be = get_backend("higgsfield")
    with pytest.raises(ValidationFailed, match=r"custom_reference_id: .*trained for model_version 'v1'"):
        be.run_job(be.api, JobSpec("higgsfield-ai/soul/cinema", {"prompt": "x", "custom_reference_id": rid.id}), {})


def test_style_by_name_and_unknown_style(trained_obama, cloud_env):
    be = get_backend("higgsfield")
    res = be.generate(GenerateRequest(prompt="x", soul=trained_obama, preset="Y2K", quality="720p", seed=1))
    assert res.images.shape == (1, 1024, 768, 3)  # 1152x1536 at 720p
    with pytest.raises(ValidationFailed, match="unknown style 'Nope' in the soul style list that model_version v1 takes; available: Realistic, Y2K"):
        be.generate(GenerateRequest(prompt="x", soul=trained_obama, preset="Nope"))


def test_estimate_only_and_max_usd_guard_submit_nothing(trained_obama, cloud_env):
    be = get_backend("higgsfield")
    est = be.generate(GenerateRequest(prompt="x", soul=trained_obama, batch=4, options={"estimate_only": True}))
    assert est.images.shape[0] == 0 and est.cost == {"credits": 12.0, "usd": 0.75}
    with pytest.raises(CostLimit, match=r"estimated \$0.7500 .* above max_usd=\$0.5000"):
        be.generate(GenerateRequest(prompt="x", soul=trained_obama, batch=4, options={"max_usd": 0.5}))
    assert set(stats(cloud_env)["paid"]) == {"/v1/custom-references"}


def test_higgsfield_edit_and_dop_animate(trained_obama, cloud_env, faces):
    be = get_backend("higgsfield")
    src = _photo(faces, "biden/biden.jpg")
    res = be.edit(EditRequest(image=src, prompt="make it noir", soul=trained_obama, strength=0.3, seed=2))
    assert res.images.ndim == 4 and res.images.shape[0] == 1
    vid = be.animate(AnimateRequest(image=src, end_image=src[::-1].copy(), prompt="walks",
                                    motions=[("dolly_in", 0.6), ("Handheld", 0.2)], seed=5))
    assert (vid.fps, vid.frames) == (24.0, 120) and vid.path.suffix == ".mp4"
    assert vid.width > 0 and vid.height > 0
    with pytest.raises(ValidationFailed, match="at most 2 motions"):
        be.animate(AnimateRequest(image=src, motions=[("Dolly In", 0.5)] * 3))
    with pytest.raises(ValidationFailed, match="unknown motion 'spin'"):
        be.animate(AnimateRequest(image=src, motions=[("spin", 0.5)]))


def test_wavespeed_edit_animate_and_unsupported_generate(trained_obama, cloud_env, faces):
    be = get_backend("wavespeed")
    src = _photo(faces)
    res = be.edit(EditRequest(image=src, prompt="studio light", soul=trained_obama, strength=0.5, seed=3))
    assert res.images.shape[0] == 1 and res.images.shape[1:3] == src.shape[:2]
    vid = be.animate(AnimateRequest(image=src, prompt="turns", motions=[("Dolly In", 0.5)]))
    assert vid.frames == 120
    with pytest.raises(NotImplementedError, match="wavespeed"):
        be.generate(GenerateRequest(prompt="x", soul=trained_obama))
    assert stats(cloud_env)["paid"]["/api/v3/higgsfield/soul/image-to-image"] == 1


def test_wavespeed_moderation_is_normalised(trained_obama, cloud_env, faces):
    from soulid.backends.engine import Moderated

    faults(cloud_env, {"kind": "moderated", "path": "/api/v3/higgsfield/soul"})
    with pytest.raises(Moderated, match="NSFW"):
        get_backend("wavespeed").edit(EditRequest(image=_photo(faces), prompt="x", soul=trained_obama))


def test_aurashot_generate_id_photo_and_edit(obama, cloud_env, faces):
    be = get_backend("aurashot")
    res = be.generate(GenerateRequest(prompt="linkedin headshot", soul=obama, seed=4))
    assert res.images.shape[0] == 1
    sheet = be.generate(GenerateRequest(prompt="", soul=obama, options={"mode": "id_photo"}))
    assert sheet.request_id != res.request_id
    ed = be.edit(EditRequest(image=_photo(faces, "biden/biden.jpg"), prompt="swap", soul=obama))
    assert ed.images.shape[0] == 1
    assert stats(cloud_env)["paid"] == {"/aurashot/v1/generate": 1, "/aurashot/v1/id-photo": 1,
                                        "/aurashot/v1/edit": 1}
    with pytest.raises(NotImplementedError):
        be.animate(AnimateRequest(image=_photo(faces)))
