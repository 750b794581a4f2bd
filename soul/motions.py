"""Motion presets for DoP Animate: the local camera moves, and Higgsfield's
motions list matched by name.

Local moves are 2-D virtual-camera paths over a still: each frame is a crop
window (centre ``cx, cy`` in 0..1 of the image, ``zoom`` >= 1, ``roll`` in
degrees) turned into an affine matrix for :func:`cv2.warpAffine`. A 2-D path
cannot show parallax, so ``dolly_*`` differs from ``zoom_*`` by its speed
profile (a physical dolly moves at constant speed; a zoom eases in and out)
and ``orbit`` is approximated by a sideways arc with a slight roll.

Remote motions come from ``GET /v1/motions`` (items ``{"id", "name",
"description", "preview_url", ...}``; cached 24 h like the style lists, see
:func:`soulid.soul.presets.cached_lists`) and are matched to local moves by
name (``"Dolly In"`` == ``dolly_in``), so a workflow that names a local move
also runs on the cloud. Strength is 0..1 (Higgsfield's motion ``strength``;
locally it scales the move's amplitude).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .presets import CACHE_MAX_AGE, FetchJson, PresetError, cached_lists, normalise_name

MOTIONS_PATH = "/v1/motions"
MOTIONS_CACHE_FILE = "higgsfield_motions.json"


@dataclass(frozen=True)
class LocalMove:
    """A local camera move.

    Attributes:
        name: ``zoom_in`` ...
        description: what the camera does.
        aliases: Higgsfield motion names that mean the same move.
    """

    name: str
    description: str
    aliases: tuple[str, ...] = ()


LOCAL_MOVES: dict[str, LocalMove] = {m.name: m for m in (
    LocalMove("zoom_in", "optical zoom toward the face, eased in and out", ("Zoom In",)),
    LocalMove("zoom_out", "optical zoom away from the face, eased in and out", ("Zoom Out",)),
    LocalMove("pan_left", "camera turns left: the scene slides right across the frame", ("Pan Left",)),
    LocalMove("pan_right", "camera turns right: the scene slides left across the frame", ("Pan Right",)),
    LocalMove("tilt_up", "camera tilts up: the scene slides down", ("Tilt Up",)),
    LocalMove("tilt_down", "camera tilts down: the scene slides up", ("Tilt Down",)),
    LocalMove("dolly_in", "camera travels toward the subject at constant speed", ("Dolly In",)),
    LocalMove("dolly_out", "camera travels away from the subject at constant speed", ("Dolly Out",)),
    LocalMove("crash_zoom", "sudden fast zoom in during the first third, then hold", ("Crash Zoom In", "Crash Zoom")),
    LocalMove("orbit", "sideways arc around the subject with a slight roll (2-D approximation)",
              ("Arc Right", "360 Orbit", "Orbit")),
    LocalMove("handheld_static", "locked-off framing with gentle handheld sway", ("Handheld", "Static")),
)}


@dataclass
class MotionPreset:
    """A motion for DoP Animate.

    Attributes:
        name: a local move name (``dolly_in``) or a Higgsfield motion name.
        kind: ``"local"`` (has a local camera path; may also have a remote id)
            or ``"remote"`` (Higgsfield only).
        strength: 0..1.
        remote_id: Higgsfield motion id, or None when unresolved.
        remote_name: the Higgsfield motion's name, when resolved.
        description: what the camera does.
    """

    name: str
    kind: str = "local"
    strength: float = 0.5
    remote_id: str | None = None
    remote_name: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)

    def with_strength(self, strength: float) -> "MotionPreset":
        """A copy with ``strength`` clamped to 0..1."""
        return replace(self, strength=min(1.0, max(0.0, float(strength))))

    def as_pair(self) -> tuple[str, float]:
        """``(remote id or name, strength)`` for :attr:`AnimateRequest.motions`."""
        return (self.remote_id or self.name, self.strength)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "strength": self.strength, "remote_id": self.remote_id,
                "remote_name": self.remote_name, "resolved": self.remote_id is not None,
                "description": self.description}


def _remote_index(items: list[dict]) -> dict[str, dict]:
    return {normalise_name(it["name"]): it for it in items}


def list_motions(fetch_json: FetchJson | None = None, refresh: bool = False,
                 max_age: float = CACHE_MAX_AGE) -> tuple[list[MotionPreset], str, str]:
    """Local moves (with remote ids where a Higgsfield motion matches one of
    their names) followed by the remaining Higgsfield motions.

    Args:
        fetch_json: the cloud client's GET (see :data:`soulid.soul.presets.FetchJson`),
            or None to use the cache only.

    Returns:
        ``(motions, source, error)``: ``source`` as in
        :class:`soulid.soul.presets.CachedLists`; ``error`` why a fetch failed.
    """
    got = cached_lists(fetch_json, {"motions": (MOTIONS_PATH,)}, MOTIONS_CACHE_FILE, refresh, max_age)
    items = got.lists.get("motions", [])
    by_name = _remote_index(items)
    used: set[str] = set()
    out = []
    for mv in LOCAL_MOVES.values():
        hit = None
        for n in (mv.name,) + mv.aliases:
            hit = by_name.get(normalise_name(n))
            if hit:
                break
        if hit:
            used.add(hit["id"])
        out.append(MotionPreset(mv.name, "local", remote_id=hit["id"] if hit else None,
                                remote_name=hit["name"] if hit else "", description=mv.description))
    for it in items:
        if it["id"] not in used:
            out.append(MotionPreset(it["name"], "remote", remote_id=it["id"], remote_name=it["name"],
                                    description=it.get("description", "")))
    return out, got.source, got.error


def get_motion(name: str, strength: float = 0.5, motions: list[MotionPreset] | None = None) -> MotionPreset:
    """The motion called ``name`` (normalised match on local names, their
    Higgsfield aliases and remote names), at ``strength``.

    Raises:
        PresetError: unknown motion.
    """
    motions = list_motions()[0] if motions is None else motions
    k = normalise_name(name)
    for m in motions:
        keys = {normalise_name(m.name), normalise_name(m.remote_name)}
        if m.kind == "local":
            keys |= {normalise_name(a) for a in LOCAL_MOVES[m.name].aliases}
        if k in keys:
            return m.with_strength(strength)
    raise PresetError(f"motion {name!r} is unknown; local moves: {', '.join(LOCAL_MOVES)}")


# ------------------------------------------------------------ camera paths
def _ease(t: np.ndarray) -> np.ndarray:
    """Smoothstep ease-in-out on 0..1."""
    return t * t * (3 - 2 * t)


def camera_path(name: str, frames: int, strength: float = 0.5, seed: int = 0) -> np.ndarray:
    """Per-frame virtual camera of local move ``name``.

    Args:
        frames: number of frames (>= 1).
        strength: 0..1; 0 is a still frame, 1 the widest move
            (zoom up to 1.4x, pans across the whole margin of a 1.3x crop).
        seed: randomness of ``handheld_static`` sway.

    Returns:
        ``[frames, 4]`` float64: ``cx, cy`` (window centre, 0..1 of the
        image), ``zoom`` (>= 1), ``roll`` (degrees, clockwise).

    Raises:
        PresetError: unknown move, or ``frames`` < 1.
    """
    if name not in LOCAL_MOVES:
        raise PresetError(f"local camera move {name!r} is unknown; use one of {', '.join(LOCAL_MOVES)}")
    if frames < 1:
        raise PresetError(f"frames must be at least 1, not {frames}")
    s = min(1.0, max(0.0, float(strength)))
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    cx, cy = np.full(frames, 0.5), np.full(frames, 0.5)
    zoom, roll = np.ones(frames), np.zeros(frames)
    side_zoom = 1.0 + 0.3 * s
    room = (1.0 - 1.0 / side_zoom) / 2.0  # how far the window centre can move
    if name in ("zoom_in", "zoom_out"):
        e = _ease(t)
        zoom = 1.0 + 0.4 * s * (e if name == "zoom_in" else 1.0 - e)
    elif name in ("dolly_in", "dolly_out"):
        # constant speed of travel: magnification grows like 1 / (distance)
        d0, d1 = (1.0, 1.0 / (1.0 + 0.3 * s)) if name == "dolly_in" else (1.0 / (1.0 + 0.3 * s), 1.0)
        zoom = 1.0 / (d0 + (d1 - d0) * t)
    elif name == "crash_zoom":
        fast = np.clip(t / 0.3, 0.0, 1.0) ** 3
        zoom = 1.0 + 0.9 * s * fast
    elif name in ("pan_left", "pan_right", "tilt_up", "tilt_down"):
        zoom = np.full(frames, side_zoom)
        e = _ease(t)
        sweep = room * (1.0 - 2.0 * e)  # +room .. -room
        if name == "pan_left":
            cx = 0.5 + sweep
        elif name == "pan_right":
            cx = 0.5 - sweep
        elif name == "tilt_up":
            cy = 0.5 + sweep
        else:
            cy = 0.5 - sweep
    elif name == "orbit":
        zoom = np.full(frames, side_zoom)
        e = _ease(t)
        cx = 0.5 - room * np.cos(np.pi * e)  # left edge of the margin to the right
        roll = 4.0 * s * np.sin(np.pi * (e - 0.5))
    elif name == "handheld_static":
        rng = np.random.default_rng(seed)
        zoom = np.full(frames, 1.0 + 0.06 * max(s, 0.2))
        # low-pass filtered noise: sway of about 1 % of the frame at strength 1
        k = np.hanning(9) / np.hanning(9).sum()
        for arr, amp in ((cx, 0.01), (cy, 0.01), (roll, 0.8)):
            n = np.convolve(rng.standard_normal(frames + 8), k, mode="valid")[:frames]
            arr += amp * s * n / max(np.abs(n).max(), 1e-9)
    return np.stack([cx, cy, zoom, roll], axis=1)


def frame_matrices(path: np.ndarray, width: int, height: int) -> np.ndarray:
    """Affine matrices for :func:`cv2.warpAffine` (source -> output pixels)
    of a :func:`camera_path`: ``[F, 2, 3]`` float64."""
    out = np.zeros((len(path), 2, 3))
    for i, (cx, cy, zoom, roll) in enumerate(path):
        a = np.deg2rad(roll)
        c, s_ = np.cos(a) * zoom, np.sin(a) * zoom
        px, py = cx * width, cy * height  # source point that lands in the centre
        out[i] = [[c, s_, width / 2 - c * px - s_ * py], [-s_, c, height / 2 + s_ * px - c * py]]
    return out


def render_move(image: np.ndarray, name: str, frames: int, strength: float = 0.5, seed: int = 0) -> np.ndarray:
    """Animate a still with local move ``name``.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.

    Returns:
        ``[frames, H, W, 3]`` uint8, edges filled by reflection (Lanczos
        resampling, OpenCV).
    """
    import cv2

    h, w = image.shape[:2]
    mats = frame_matrices(camera_path(name, frames, strength, seed), w, h)
    return np.stack([
        cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT101) for m in mats
    ])


__all__ = ["LOCAL_MOVES", "MotionPreset", "list_motions", "get_motion", "camera_path", "frame_matrices",
           "render_move"]
