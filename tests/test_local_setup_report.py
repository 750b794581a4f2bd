"""One missing-setup report for the local steps: every package and file at
once, each file with its real path on this machine, a source, size and VRAM."""
from __future__ import annotations

import pytest

from soulid.backends.local.models import LocalSetupMissing, check_analyzer, check_local
from standin.fixtures import _obama_bytes, obama  # noqa: F401  (a real dlib Soul ID)


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("SOULID_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    return tmp_path / "models"


def test_one_error_lists_every_file_of_a_method(models, obama):
    assert "insightface_buffalo_l" not in obama.analyzers  # a dlib Soul ID: the embedding must be computed
    with pytest.raises(LocalSetupMissing) as e:
        check_local("generate", "faceid_plusv2", soul=obama)
    err = e.value
    want = [models / "diffusers" / "stable-diffusion-xl-base-1.0" / "model_index.json",
            models / "ipadapter" / "ip-adapter-faceid-plusv2_sdxl.bin",
            models / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors",
            models / "insightface" / "models" / "buffalo_l" / "det_10g.onnx",
            models / "insightface" / "models" / "buffalo_l" / "w600k_r50.onnx"]
    assert err.missing == [str(p) for p in want]
    text = str(err)
    assert "<ComfyUI>" not in text and text.count("huggingface.co") >= 3 and "VRAM" in text and "GB" in text
    # the files, once there, are found: only what is still missing is named
    (models / "ipadapter").mkdir(parents=True)
    (models / "ipadapter" / "ip-adapter-faceid-plusv2_sdxl.bin").write_bytes(b"x")
    with pytest.raises(LocalSetupMissing) as e:
        check_local("generate", "faceid_plusv2", soul=obama)
    assert len(e.value.missing) == 4 and "ipadapter" not in str(e.value.missing)


def test_instantid_i2v_and_analyzer_reports(models, obama):
    with pytest.raises(LocalSetupMissing) as e:
        check_local("generate", "instantid", soul=obama)
    names = " ".join(e.value.missing)
    for part in ("stable-diffusion-xl-base-1.0", "instantid/ip-adapter.bin", "controlnet/instantid", "antelopev2"):
        assert part in names
    with pytest.raises(LocalSetupMissing) as e:
        check_local("i2v")
    assert e.value.missing == [str(models / "diffusers" / "Wan2.2-TI2V-5B-Diffusers" / "model_index.json")]
    with pytest.raises(LocalSetupMissing, match="antelopev2"):
        check_analyzer("insightface")
    check_analyzer("dlib")  # nothing beyond the base install
