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


def _rewrite_manifest(src: bytes, drop: tuple[str, ...] = (), **changes) -> bytes:
    """``src`` with its manifest updated by ``changes`` and the keys ``drop`` removed."""
    zin = zipfile.ZipFile(io.BytesIO(src))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n == "manifest.json":
                m = json.loads(data)
                m.update(changes)
                for k in drop:
                    m.pop(k, None)
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


# ------------------------------------------------------------ issue 12: writes
def test_two_processes_saving_one_new_name_get_exactly_one_success(soul, tmp_path):
    import multiprocessing as mp

    from race_worker import save_new_names

    ctx = mp.get_context("spawn")
    rounds = 50
    barrier, results = ctx.Barrier(2), ctx.Queue()
    # The Soul ID goes by file: a child that dies at start must not leave
    # start() blocked writing a large argument into its pipe.
    (tmp_path / "soul.bin").write_bytes(soul.to_bytes())
    procs = [ctx.Process(target=save_new_names,
                         args=(str(tmp_path / "lib"), str(tmp_path / "soul.bin"), float(m), rounds, barrier, results))
             for m in (1, 2)]
    for p in procs:
        p.start()
    try:
        got = dict(results.get(timeout=240) for _ in procs)
    except Exception:
        raise AssertionError(f"a saving process gave no result (exit codes {[p.exitcode for p in procs]})") from None
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lib = Library(tmp_path / "lib")
    for r in range(rounds):
        winners = [m for m, wins in got.items() if r in wins]
        assert len(winners) == 1, f"round {r}: winners {winners}"
        assert lib.load(f"race{r}").created == winners[0]  # the file holds the winner's save: nothing lost silently
    assert not [p.name for p in lib.dir.iterdir() if p.name.startswith(".")]  # no temp file left


def test_two_threads_saving_at_once_never_collide(soul, tmp_path):
    import threading

    lib = Library(tmp_path / "lib")
    data = soul.to_bytes()
    errors, wins = [], {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(t):
        s = SoulID.from_bytes(data)
        for r in range(50):
            barrier.wait()
            try:
                lib.save(s, "shared", overwrite=True)  # same name, same moment
                try:
                    lib.save(s, f"new{r}", overwrite=False)
                    wins[t].append(r)
                except LibraryError:
                    pass
            except Exception as e:  # noqa: BLE001 - any exception is the failure being tested
                errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(t,)) for t in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert sorted(wins[0] + wins[1]) == list(range(50))
    assert lib.load("shared").name == "shared"


def test_orphan_temp_files_are_swept_by_the_next_save(soul, tmp_path):
    import time

    lib = Library(tmp_path / "lib")
    old = lib.dir / ".obama.soulid.999.1.abcdefgh.soulid-tmp"
    fresh = lib.dir / ".obama.soulid.998.1.ijklmnop.soulid-tmp"
    other = lib.dir / ".someone-elses.tmp"
    for f in (old, fresh, other):
        f.write_bytes(b"x" * 1000)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    lib.save(soul, "obama")
    assert not old.exists() and fresh.exists() and other.exists()


def test_library_folder_is_0700_and_files_0600(soul, tmp_path, monkeypatch):
    from soulid.soul.paths import data_dir

    monkeypatch.setenv("SOULID_DATA_DIR", str(tmp_path / "fresh" / "data"))
    assert data_dir().stat().st_mode & 0o777 == 0o700
    lib = Library(tmp_path / "fresh" / "lib")
    assert lib.dir.stat().st_mode & 0o777 == 0o700
    p = lib.save(soul, "obama")
    assert p.stat().st_mode & 0o777 == 0o600
    out = lib.export("obama", tmp_path / "out.soulid")
    assert out.stat().st_mode & 0o777 == 0o600
    lib.save(soul, "obama", overwrite=True)
    assert p.stat().st_mode & 0o777 == 0o600


def test_unreadable_library_is_an_error_not_an_empty_list(soul, tmp_path, monkeypatch):
    lib = Library(tmp_path / "lib")
    lib.save(soul, "obama")
    real = os.scandir

    def denied(path=".", *a):
        if os.fspath(path) == str(lib.dir):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(LibraryError, match="cannot be read.*Permission denied"):
        lib.list()


def test_names_are_counted_in_bytes(soul, tmp_path):
    lib = Library(tmp_path / "lib")
    with pytest.raises(LibraryError, match=r"256 bytes in UTF-8 \(at most 128"):
        lib.save(soul, "\U0001F600" * 64)
    with pytest.raises(LibraryError, match="not valid text"):
        lib.save(soul, "caf\udce9")
    assert lib.save(soul, "Zoë \U0001F600").name == "Zoë \U0001F600.soulid"
    assert [p.name for p in lib.dir.iterdir()] == ["Zoë \U0001F600.soulid"]


# ---------------------------------------------------------- issue 12: privacy
def test_no_absolute_path_of_this_machine_inside_a_soulid(faces, tmp_path):
    """Create from a folder under the temp dir through the CLI, log a generation,
    then grep every member of the library file and of both exports."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from soulid.soul import charlog

    photos = tmp_path / "private folder" / "obama"
    photos.mkdir(parents=True)
    for n in ("obama.jpg", "obama3.jpg", "obama4.jpg"):
        shutil.copy(faces / "obama" / n, photos / n)
    (photos / "anim.gif").write_bytes(b"GIF89a")  # a skipped entry is reported too
    lib_dir = tmp_path / "lib"
    env = {**os.environ, "SOULID_LIBRARY": str(lib_dir)}
    p = subprocess.run([sys.executable, "-m", "soulid", "create", "--name", "me", "--analyzer", "dlib", str(photos)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    lib = Library(lib_dir)
    charlog.log_generation(lib, "me", "a portrait", backend="local", model="sdxl",
                           image=lib.load("me").photos[0].rgb())
    soul = lib.load("me")
    soul.remote_ids.append(RemoteID(provider="higgsfield", id="remote-123", model_version="v2"))
    lib.save(soul, overwrite=True)
    plain = lib.export("me", tmp_path / "plain.soulid")
    shared = tmp_path / "shared.soulid"
    p = subprocess.run([sys.executable, "-m", "soulid", "export", "me", str(shared), "--share"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    forbidden = {str(tmp_path), str(photos), str(Path.home()) + "/", str(faces), str(Path(tmp_path).parent)}
    for f in (lib.path("me"), plain, shared):
        with zipfile.ZipFile(f) as z:
            for n in z.namelist():
                data = z.read(n)
                for s in forbidden:
                    assert s.encode() not in data, f"{f.name}:{n} holds {s!r}"
    full = SoulID.load(plain)
    assert full.log and full.remote("higgsfield") and any(k.startswith("thumbs/") for k in full.extra_files)
    assert {e["path"] for e in full.qa_report["photos"]} == {"obama.jpg", "obama3.jpg", "obama4.jpg"}
    assert [e["path"] for e in full.qa_report["summary"]["skipped"]] == ["anim.gif"]
    s = SoulID.load(shared)
    assert s.log == [] and s.remote_ids == []
    # --share keeps the QA thumbnails of accepted photos only (README: "of rejected photos" go).
    kept = {d["thumb"] for d in full.qa_report["photos"]
            if d.get("thumb") and d["rating"] != "rejected" and not d.get("excluded")}
    assert kept and set(s.extra_files) == kept
    assert all(d.get("thumb") in kept for d in s.qa_report["photos"] if d.get("thumb"))
    with zipfile.ZipFile(shared) as z:
        m = json.loads(z.read("manifest.json"))
        assert m["log"] == [] and m["remote_ids"] == [] and not any(n.startswith("thumbs/") for n in z.namelist())
    assert len(s.photos) == len(full.photos) and np.array_equal(s.analyzer().embeddings, full.analyzer().embeddings)


# ------------------------------------------------- issue 9 item 3: one library
def _cli(*args, env):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "soulid", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_finds_comfyuis_library_with_comfyui_path(soul, tmp_path, monkeypatch):
    from soulid.soul import paths

    comfy = tmp_path / "ComfyUI"
    # What the nodes do when ComfyUI loads them: hand in ComfyUI's user directory.
    monkeypatch.setattr(paths, "_comfy", None)
    paths.set_comfy_dirs(base_path=comfy, user_dir=comfy / "user", input_dir=comfy / "input")
    monkeypatch.delenv("SOULID_LIBRARY")
    monkeypatch.delenv("SOULID_DATA_DIR")
    saved = Library().save(soul, "made_in_comfy")
    assert saved == comfy / "user" / "soulid" / "library" / "made_in_comfy.soulid"
    monkeypatch.setattr(paths, "_comfy", None)

    # Not the ComfyUI the test run may point at (CI sets COMFYUI_PATH to its host).
    env = {k: v for k, v in os.environ.items() if k not in ("SOULID_LIBRARY", "SOULID_DATA_DIR", "COMFYUI_PATH")}
    p = _cli("show", "made_in_comfy", env={**env, "COMFYUI_PATH": str(comfy)})
    assert p.returncode == 0, p.stderr
    assert "Soul ID made_in_comfy" in p.stdout
    p = _cli("list", "--json", env={**env, "COMFYUI_PATH": str(comfy)})
    assert json.loads(p.stdout) == ["made_in_comfy"]
    assert f"library: {comfy / 'user' / 'soulid' / 'library'} (from $COMFYUI_PATH)" in p.stderr
    # Without COMFYUI_PATH the CLI says where it looked.
    p = _cli("show", "made_in_comfy", env=env)
    assert p.returncode == 2 and "no Soul ID named 'made_in_comfy'" in p.stderr and "(from default)" in p.stderr


def test_soulid_config_set_library(soul, tmp_path, monkeypatch):
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    Library(comfy / "user" / "soulid" / "library").save(soul, "anna")
    env = {k: v for k, v in os.environ.items() if k not in ("SOULID_LIBRARY", "COMFYUI_PATH")}
    p = _cli("config", "set", "library", str(comfy), env=env)  # a ComfyUI checkout: its library is used
    assert p.returncode == 0, p.stderr
    p = _cli("config", "show", "--json", env=env)
    info = json.loads(p.stdout)
    assert info["library"] == str(comfy / "user" / "soulid" / "library") and info["library_source"] == "soulid config"
    from soulid.soul.settings import settings_path

    assert settings_path().stat().st_mode & 0o777 == 0o600
    assert _cli("show", "anna", env=env).returncode == 0
    assert _cli("config", "unset", "library", env=env).returncode == 0
    assert _cli("show", "anna", env=env).returncode == 2


def test_core_reads_no_folder_paths_module(tmp_path, monkeypatch):
    """The core takes ComfyUI's folders only from set_comfy_dirs, never from sys.modules."""
    import sys
    import types
    from pathlib import Path

    from soulid.soul import paths

    fake = types.SimpleNamespace(base_path="/nowhere", get_user_directory=lambda: "/nowhere/user",
                                 get_folder_paths=lambda k: ["/nowhere/models"], models_dir="/nowhere/models")
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    monkeypatch.setattr(paths, "_comfy", None)
    monkeypatch.delenv("SOULID_MODELS_DIR", raising=False)
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    # Only the per-user fallback: nothing from the fake folder_paths module.
    assert not paths.inside_comfy() and paths.models_dirs("loras") == [paths.data_dir() / "models" / "loras"]
    paths.set_comfy_dirs(base_path=tmp_path, user_dir=tmp_path / "u", models_dir=tmp_path / "m",
                         model_folders=lambda kind: [str(tmp_path / "extra" / kind)])
    assert paths.inside_comfy()
    assert paths.models_dirs("loras") == [tmp_path / "extra" / "loras", tmp_path / "models" / "loras"]
    monkeypatch.delenv("SOULID_DATA_DIR")
    assert paths.data_dir() == tmp_path / "u" / "soulid"
    src = Path(paths.__file__).read_text() + Path(paths.__file__).with_name("create.py").read_text()
    assert "sys.modules" not in src and "folder_paths\" in" not in src
