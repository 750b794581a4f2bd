"""InstantID on diffusers parts.

InstantID (Wang et al., 2024, arXiv:2401.07519,
https://github.com/instantX-research/InstantID) conditions SDXL on a face in
two ways:

1. **Image prompt**: the raw antelopev2 ArcFace embedding ``[512]`` goes
   through a Perceiver Resampler (16 tokens x 2048) into decoupled
   cross-attention, IP-Adapter style. Its ``ip-adapter.bin`` has the same
   layout as IP-Adapter Plus (``image_proj``: ``latents``, ``proj_in``,
   ``layers.*``; ``ip_adapter``: ``N.to_k_ip/to_v_ip``), so diffusers' own
   ``load_ip_adapter`` loads it (as ``IPAdapterPlusImageProjection``).
2. **IdentityNet**: an SDXL ControlNet whose condition image is the 5 face
   keypoints drawn as coloured limbs and dots (:func:`draw_keypoints`) and
   whose cross-attention reads the **face tokens**, not the text. diffusers
   has no InstantID pipeline in core, so :class:`IdentityTokens` installs a
   forward pre-hook on the ControlNet of a stock
   ``StableDiffusionXLControlNet*Pipeline`` that swaps its
   ``encoder_hidden_states`` for the face tokens (zeros-embedding tokens for
   the unconditional half under classifier-free guidance, as the reference
   pipeline does).
"""
from __future__ import annotations

import math

import numpy as np

#: Colours of the 5 keypoints (reference ``draw_kps``): eyes, nose, mouth corners.
KPS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
#: Limbs: each eye and mouth corner joined to the nose.
KPS_LIMBS = ((0, 2), (1, 2), (3, 2), (4, 2))


def draw_keypoints(width: int, height: int, keypoints: np.ndarray, stick_width: int = 4,
                   radius: int = 10) -> np.ndarray:
    """IdentityNet's condition image: ``[height, width, 3]`` uint8, black with
    the 5 keypoints (``[5, 2]`` px, ArcFace order) as ellipse limbs to the nose
    (``stick_width`` 4 px) at 60 % intensity and filled dots of ``radius`` 10 px
    on top, at any image size: the parameters of the reference ``draw_kps``
    (InstantID ``pipeline_stable_diffusion_xl_instantid.py``, cubiq
    ComfyUI_InstantID). ``tests/test_local_reference_parity.py`` checks them
    at 512, 1024 and 2048 px: each dot is exactly a filled OpenCV circle of
    radius 10, limbs are at 60 % (153)."""
    import cv2

    kps = np.asarray(keypoints, np.float64)
    if kps.shape != (5, 2):
        raise ValueError(f"keypoints must be [5, 2], got {kps.shape}")
    out = np.zeros((height, width, 3), np.uint8)
    limbs = np.zeros_like(out)
    for a, b in KPS_LIMBS:
        (x0, y0), (x1, y1) = kps[a], kps[b]
        length = math.hypot(x0 - x1, y0 - y1)
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        poly = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), stick_width), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(limbs, poly, KPS_COLORS[a])
    out[:] = (limbs.astype(np.float32) * 0.6).astype(np.uint8)
    for (x, y), c in zip(kps, KPS_COLORS):
        cv2.circle(out, (int(x), int(y)), radius, c, -1)
    return out


def place_keypoints(keypoints: np.ndarray, src_hw: tuple[int, int], width: int, height: int) -> np.ndarray:
    """Map keypoints of a ``src_hw`` photo into a ``width x height`` frame the
    way the photo would be resized to cover the frame and centre-cropped."""
    sh, sw = src_hw
    s = max(width / sw, height / sh)
    off = np.array([(sw * s - width) / 2, (sh * s - height) / 2])
    return (np.asarray(keypoints, np.float64) * s - off).astype(np.float32)


class IdentityTokens:
    """Feeds InstantID's face tokens to IdentityNet's cross-attention.

    Args:
        pipe: a ``StableDiffusionXLControlNet*Pipeline`` with InstantID's
            ``ip-adapter.bin`` loaded through ``load_ip_adapter``.

    Use :meth:`set` before each call and :meth:`remove` when done (also a
    context manager).
    """

    def __init__(self, pipe):
        self.pipe = pipe
        self.tokens = None  # [2, 16, C]: unconditional, conditional
        self._handle = pipe.controlnet.register_forward_pre_hook(self._hook, with_kwargs=True)

    def set(self, embedding: np.ndarray, device, dtype) -> None:
        """Project ``embedding`` (``[512]`` float32, antelopev2 raw) and a zero
        embedding through the loaded Resampler: tokens ``[2, 16, 2048]`` on ``device``.

        The Resampler is called directly here (not inside the UNet's forward),
        so it runs where its weights are: with ``offload: model`` they stay
        on the CPU until the UNet's own offload hook moves them, so the
        projection runs on the CPU and the tokens move to ``device``; with
        ``offload: sequential`` (weights on the meta device behind
        accelerate hooks) the hooks run it on ``device``."""
        import torch

        proj = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        w = next(proj.parameters())
        run_on = torch.device(device) if w.device.type == "meta" else w.device
        e = torch.as_tensor(np.asarray(embedding, np.float32)).reshape(1, 1, -1)
        e = torch.cat([torch.zeros_like(e), e]).to(device=run_on, dtype=dtype)
        with torch.no_grad():
            self.tokens = proj(e).to(device)

    def _hook(self, module, args, kwargs):
        if self.tokens is None:
            return None
        hs = kwargs.get("encoder_hidden_states")
        n = hs.shape[0] if hs is not None else args[0].shape[0]
        uncond, cond = self.tokens[0:1], self.tokens[1:2]
        if getattr(self.pipe, "do_classifier_free_guidance", False) and n % 2 == 0:
            tok = torch_cat([uncond.expand(n // 2, -1, -1), cond.expand(n // 2, -1, -1)])
        else:
            tok = cond.expand(n, -1, -1)
        kwargs["encoder_hidden_states"] = tok.to(dtype=hs.dtype if hs is not None else tok.dtype)
        return args, kwargs

    def remove(self) -> None:
        self._handle.remove()
        self.tokens = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def torch_cat(ts):
    import torch

    return torch.cat(ts, dim=0)
