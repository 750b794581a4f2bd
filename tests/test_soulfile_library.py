"""The portable Soul ID file and the library: round trips, versions, names, atomic saves."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from soulid.soul.create import create_soul_id
from soulid.soul.errors import LibraryError, SoulFileError
from soulid.soul.library import Library
from soulid.soul.soulfile import FORMAT_VERSION, RemoteID, SoulID


@pytest.fixture(scope="module")
def soul(faces):
    res = create_soul_id([str(faces / "obama" / n) for n in ("obama.jpg", "obama3.jpg", "obama4.jpg")], "obama", analyzer="dlib", workers=1)
    return res.soul


def test_round_trip_keeps_everything(soul, tmp_path):
    soul.remote_ids.append(RemoteID(provider="higgsfield", id="abc", model_version="v2"))
    try:
        p = soul.save(tmp_path / "o.soulid")
        back = SoulID.load(p)
    finally:
        soul.remote_ids.clear()
    a, b = soul.analyzer("dlib"), back.analyzer("dlib")
    assert np.array_equal(a.embeddings, b.embeddings) and np.allclose(a.centroid, b.centroid)
    assert b.threshold == pytest.approx(a.threshold)
    assert [p.jpeg for p in back.photos] == [p.jpeg for p in soul.photos]
    assert back.keypoint_reference == soul.keypoint_reference
    assert back.remote("higgsfield").id == "abc"
    with zipfile.ZipFile(p) as z:
        names = set(z.namelist())
        m = json.loads(z.read("manifest.json"))
    assert {"manifest.json", "embeddings.safetensors", "photos/000.jpg"} <= names
    assert m["format_version"] == FORMAT_VERSION and m["analyzers"]["dlib"]["model_id"]
    assert m["remote_ids"][0] == {**m["remote_ids"][0], "provider": "higgsfield", "id": "abc", "model_version": "v2"}


def _rewrite_manifest(src: bytes, **changes) -> bytes:
    zin = zipfile.ZipFile(io.BytesIO(src))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n == "manifest.json":
                m = json.loads(data)
                m.update(changes)
                data = json.dumps(m).encode()
            zout.writestr(n, data)
    return out.getvalue()


def test_newer_or_unknown_versions_fail_clearly(soul, tmp_path):
    data = soul.to_bytes()
    newer = tmp_path / "new.soulid"
    newer.write_bytes(_rewrite_manifest(data, format_version=FORMAT_VERSION + 1))
    with pytest.raises(SoulFileError, match="newer than this soulid supports"):
        SoulID.load(newer)
    bad = tmp_path / "bad.soulid"
    bad.write_bytes(_rewrite_manifest(data, format_version="one"))
    with pytest.raises(SoulFileError, match="unknown Soul ID format version"):
        SoulID.load(bad)
    junk = tmp_path / "junk.soulid"
    junk.write_bytes(b"hello")
    with pytest.raises(SoulFileError, match="not a zip"):
        SoulID.load(junk)


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", "", " ", ".hidden", "x" * 65, "tab\tname", "c:d"])
def test_unsafe_names_refused(soul, tmp_path, name):
    lib = Library(tmp_path / "lib")
    with pytest.raises(LibraryError):
        lib.save(soul, name)
    assert list((tmp_path / "lib").iterdir()) == []


def test_library_operations(soul, tmp_path):
    lib = Library(tmp_path / "lib")
    lib.save(soul, "Obama")
    with pytest.raises(LibraryError, match="already exists"):
        lib.save(soul, "Obama")
    lib.save(soul, "Obama", overwrite=True)
    lib.rename("Obama", "Barack")
    assert lib.list() == ["Barack"] and lib.load("Barack").name == "Barack"
    out = lib.export("Barack", tmp_path / "share.soulid")
    lib.delete("Barack")
    assert lib.list() == []
    with pytest.raises(LibraryError, match="no Soul ID named"):
        lib.load("Barack")
    assert lib.import_file(out) == "Barack"
    assert lib.import_file(out, name="Copy") == "Copy"
    assert lib.list() == ["Barack", "Copy"]


def test_crash_mid_save_leaves_old_file_intact(soul, tmp_path, monkeypatch):
    lib = Library(tmp_path / "lib")
    path = lib.save(soul, "obama")
    before = path.read_bytes()

    real_fdopen = os.fdopen

    class Crashing(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def write(self, data):  # half the bytes reach the disk, then the "crash"
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError("simulated power cut")

        def __getattr__(self, k):
            return getattr(self.f, k)

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Crashing(real_fdopen(fd, *a, **k)))
    soul2 = SoulID.from_bytes(before)
    soul2.photos = soul2.photos[:1]
    with pytest.raises(LibraryError, match="cannot save Soul ID 'obama'.*power cut"):
        lib.save(soul2, "obama", overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert lib.list() == ["obama"]
    assert len(lib.load("obama").photos) == len(soul.photos)
    assert [p.name for p in path.parent.iterdir()] == ["obama.soulid"]


def test_over_the_cap_keeps_the_best(faces):
    res = create_soul_id([str(faces / "obama")], "o", analyzer="dlib", workers=1, max_photos=2)
    kept = [p for p in res.photos if p.usable]
    dropped = [p for p in res.photos if any("photo limit" in r for r in p.reasons)]
    assert len(kept) == 2 and dropped
    assert min(p.quality for p in kept if p.rating == "perfect") >= max(
        (p.quality for p in dropped if p.rating == "perfect"), default=0
    )
    assert any("limit" in w for w in res.report["summary"]["warnings"])


def _tiny_lora_bytes(seed: int = 0) -> bytes:
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    return save({
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": rng.standard_normal((4, 32)).astype(np.float32),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": rng.standard_normal((32, 4)).astype(np.float32),
    })


def test_persona_lora_round_trip_and_version_1_files_still_load(soul, tmp_path):
    data = _tiny_lora_bytes()
    soul.attach_lora("SDXL", data, {"rank": 4, "trigger": "sks", "loss_curve": [0.3, 0.2]})
    try:
        back = SoulID.from_bytes(soul.to_bytes())
    finally:
        soul.loras.clear()
    lo = back.lora("sdxl")
    assert lo.data == data and lo.metadata["rank"] == 4 and lo.metadata["loss_curve"] == [0.3, 0.2]
    assert "loras/sdxl.safetensors" not in back.extra_files
    with pytest.raises(SoulFileError, match=r"no persona LoRA for 'flux' \(has: sdxl\).*soulid train"):
        back.lora("flux")
    with pytest.raises(SoulFileError, match="unknown LoRA architecture"):
        back.attach_lora("sdxxl", data)
    with pytest.raises(SoulFileError, match="not a safetensors file"):
        back.attach_lora("sdxl", b"not a lora")
    # A format-1 file (no "loras" section) is still read.
    v1 = SoulID.from_bytes(_rewrite_manifest(soul.to_bytes(), format_version=1))
    assert v1.loras == {} and len(v1.photos) == len(soul.photos)
