"""``soulid generate --backend local --soul NAME`` applies the Soul ID's SDXL
persona LoRA (tiny random components, the local pipelines' own loading path)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import local_tiny_models as tiny  # noqa: E402

from soulid.backends.base import GenerateRequest  # noqa: E402
from soulid.backends.local import LocalBackend, pipelines  # noqa: E402


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    return tiny.build_all(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(autouse=True)
def _models_env(models_root, monkeypatch):
    monkeypatch.setenv("SOULID_MODELS_DIR", str(models_root))


def _gen(soul, prompt="a portrait", **opts):
    req = GenerateRequest(prompt, soul=soul, width=64, height=64, seed=3,
                          options={"method": "faceid_plusv2", "steps": 2, **opts})
    return LocalBackend(device="cpu").generate(req).images


def test_persona_lora_applied_when_the_soul_has_one(faces):
    soul = tiny.soul_with_embeddings(faces)
    plain = _gen(soul, "ohwx man, a portrait")  # no LoRA yet: the prompt alone
    data, _ = tiny.persona_lora_bytes()
    soul.attach_lora("sdxl", data, {"trigger": "ohwx", "class_word": "man"})
    assert pipelines.persona_prompt(soul, "a portrait") == "ohwx man, a portrait"
    with_lora = _gen(soul)  # trigger words added, LoRA applied
    assert np.abs(with_lora - plain).max() > 1e-3
    key = pipelines._loaded["key"]
    assert any(p.endswith(f"{soul.loras['sdxl'].sha256}.safetensors") for p, _ in key.resolved.loras)
    off = _gen(soul, "ohwx man, a portrait", persona_lora=False)
    assert np.allclose(off, plain, atol=1e-5)
    pipelines.release()
