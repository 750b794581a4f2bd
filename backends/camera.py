"""The weightless camera engine: a still photo into a short clip with camera moves.

No model weights: every frame is a resampling of the source photo through a
virtual camera (crop window, zoom, sub-pixel translation, and for dolly and
orbit a depth-weighted warp that approximates parallax). Runs on CPU anywhere.

Guarantees:

* **Never a black border.** Every output pixel samples *inside* the source:
  the camera only ever looks at a window of the largest output-aspect crop of
  the photo (zoom >= 1, offsets bounded by the window's margin, dolly warps
  are convex combinations towards the focus point); coordinates are finally
  clipped to the image and sampled with ``BORDER_REPLICATE``.
* **Sub-pixel, eased motion.** Camera parameters are continuous functions of
  an eased time (cosine ease-in-out, exponential ease-out for the crash zoom);
  frames are resampled with OpenCV (``cv2.warpAffine`` / ``cv2.remap``,
  bilinear by default, bicubic on request) from a source pre-shrunk with
  ``INTER_AREA`` so that downscaling does not alias.
* **Deterministic.** The handheld shake comes from a seeded generator.

Output: H.264 / yuv420p MP4 through PyAV (even width and height), 5 s at
24 fps by default; the first frame of ``zoom_in``, ``dolly_in`` and
``crash_zoom`` is the (cropped-to-aspect) source itself.

References: OpenCV geometric transforms,
https://docs.opencv.org/4.x/da/d54/group__imgproc__transform.html ;
PyAV encoding, https://pyav.basswood-io.com/docs/stable/cookbook/numpy.html .
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..soul.errors import Interrupted, SoulIDError
from ..soul.imageio import to_rgb
from ..soul.motions import LOCAL_MOVES, move_aliases
from ..soul.paths import atomic_path
from ..soul.progress import InterruptFn, ProgressFn, report

DEFAULT_SECONDS = 5.0
DEFAULT_FPS = 24
#: Default longest side of the clip when no size is given, px.
DEFAULT_MAX_SIDE = 1024


class CameraError(SoulIDError):
    """Bad camera-engine input (unknown motion, bad size, bad image)."""


@dataclass
class CameraPath:
    """Per-frame virtual-camera parameters, each ``[N]`` float64.

    Attributes:
        zoom: magnification of the whole frame, >= 1 (1 = the full source crop).
        dx, dy: window centre offset as a fraction of the free margin, -1..1
            (-1 = window touches the left/top edge).
        dolly: extra magnification of the subject around the focus point, >= 0
            (fades to 0 away from the subject: the perspective change of a dolly).
        orbit: horizontal parallax shift, fraction of the window width: the
            background moves by ``+orbit``, the subject by ``-orbit * 0.35``.
    """

    zoom: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    dolly: np.ndarray
    orbit: np.ndarray

    @classmethod
    def still(cls, n: int) -> "CameraPath":
        return cls(np.ones(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))

    def compose(self, other: "CameraPath") -> "CameraPath":
        """Two moves at once: zooms multiply, offsets and parallax add (clipped)."""
        return CameraPath(
            self.zoom * other.zoom,
            np.clip(self.dx + other.dx, -1, 1),
            np.clip(self.dy + other.dy, -1, 1),
            self.dolly + other.dolly,
            self.orbit + other.orbit,
        )


def ease_in_out(t: np.ndarray) -> np.ndarray:
    """Cosine ease-in-out, 0..1 -> 0..1, zero velocity at both ends."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


def ease_out_expo(t: np.ndarray, until: float = 0.35) -> np.ndarray:
    """Fast start, settles by ``until`` (fraction of the clip), then holds at 1."""
    u = np.clip(np.asarray(t) / until, 0.0, 1.0)
    return (1.0 - np.power(2.0, -10.0 * u)) / (1.0 - 2.0 ** -10.0)


def _handheld(n: int, fps: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth pseudo-random shake in -1..1 for x and y: a sum of three sines
    per axis (0.2-1.3 Hz, seeded phases); slow enough to read as a hand, not a
    vibration."""
    rng = np.random.default_rng(seed)
    secs = np.arange(n) / fps
    out = []
    for _ in range(2):
        freqs = rng.uniform(0.2, 1.3, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        amps = np.array([0.55, 0.3, 0.15])
        out.append((amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * secs + phases[:, None])).sum(0))
    return out[0], out[1]


def _zoom(start: float, end: float, ease=ease_in_out):
    def path(t, s, fps, seed):
        p = CameraPath.still(len(t))
        a, b = 1 + (start - 1) * s, 1 + (end - 1) * s
        p.zoom = a + (b - a) * ease(t)
        return p

    return path


def _pan(axis: str, sign: float, zoom: float = 1.18):
    def path(t, s, fps, seed):
        p = CameraPath.still(len(t))
        p.zoom = np.full(len(t), 1 + (zoom - 1) * max(s, 1e-3))
        # The window travels from one side of its margin to the other.
        setattr(p, axis, sign * (2 * ease_in_out(t) - 1))
        return p

    return path


def _dolly(direction: int):
    def path(t, s, fps, seed):
        p = CameraPath.still(len(t))
        e = ease_in_out(t) if direction > 0 else 1 - ease_in_out(t)
        p.zoom = 1 + 0.12 * s * e
        p.dolly = 0.28 * s * e
        return p

    return path


def _orbit(sign: float):
    def path(t, s, fps, seed):
        p = CameraPath.still(len(t))
        p.zoom = np.full(len(t), 1 + 0.2 * max(s, 1e-3))
        p.orbit = sign * 0.06 * s * (2 * ease_in_out(t) - 1)
        p.dolly = np.full(len(t), 0.04 * s)
        return p

    return path


def _static(t, s, fps, seed):
    p = CameraPath.still(len(t))
    p.zoom = np.full(len(t), 1 + 0.04 * max(s, 1e-3))
    hx, hy = _handheld(len(t), fps, seed)
    p.dx, p.dy = 0.8 * s * hx, 0.8 * s * hy
    return p


def _crash(t, s, fps, seed):
    p = CameraPath.still(len(t))
    p.zoom = 1 + 1.6 * s * ease_out_expo(t)
    return p


@dataclass(frozen=True)
class MotionSpec:
    """One camera move.

    Attributes:
        name: preset name (``"zoom_in"``...).
        description: one line for ``--list-motions`` and the node tooltip.
        prompt: the same move in words, for image-to-video models (:mod:`.i2v`).
        path: ``(t [N] in 0..1, strength 0..1, fps, seed) -> CameraPath``.
    """

    name: str
    description: str
    prompt: str
    path: Callable[[np.ndarray, float, float, int], CameraPath]


#: The camera path of each move named in :data:`soulid.soul.motions.LOCAL_MOVES`.
PATHS = {
    "zoom_in": _zoom(1.0, 1.35), "zoom_out": _zoom(1.35, 1.0),
    "pan_left": _pan("dx", +1), "pan_right": _pan("dx", -1), "tilt_up": _pan("dy", +1), "tilt_down": _pan("dy", -1),
    "dolly_in": _dolly(+1), "dolly_out": _dolly(-1), "crash_zoom": _crash,
    "orbit_left": _orbit(+1), "orbit_right": _orbit(-1), "static": _static,
}
#: Motion presets, name -> spec: the core's table of moves with their paths.
MOTIONS: dict[str, MotionSpec] = {m.name: MotionSpec(m.name, m.description, m.prompt, PATHS[m.name]) for m in LOCAL_MOVES}
#: Accepted spellings for the same move (from the core's table).
ALIASES = move_aliases()


def motion_spec(name: str) -> MotionSpec:
    """The spec of ``name`` (case-insensitive, ``-``/space as ``_``, aliases).

    Raises:
        CameraError: unknown motion, naming the known ones.
    """
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in MOTIONS:
        raise CameraError(f"unknown motion {name!r}; known motions: {', '.join(MOTIONS)}")
    return MOTIONS[key]


def parse_motion(text: str) -> tuple[str, float]:
    """``"NAME[:STRENGTH]"`` -> ``(name, strength)``; strength defaults to 1.

    Raises:
        CameraError: unknown name or a strength that is not a number in 0..1.
    """
    name, _, s = str(text).partition(":")
    spec = motion_spec(name)
    try:
        strength = float(s) if s else 1.0
    except ValueError:
        raise CameraError(f"motion {text!r}: strength {s!r} is not a number") from None
    if not 0.0 <= strength <= 1.0:
        raise CameraError(f"motion {text!r}: strength must be in 0..1, got {strength}")
    return spec.name, strength


def camera_path(motions: list[tuple[str, float]], frames: int, fps: float, seed: int = 0) -> CameraPath:
    """The composed camera path of up to two ``(name, strength)`` moves over
    ``frames`` frames (first frame t = 0, last t = 1). No moves: a still shot."""
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    path = CameraPath.still(frames)
    for name, strength in motions:
        spec = motion_spec(name)
        path = path.compose(spec.path(t, float(np.clip(strength, 0, 1)), fps, seed))
    return path


def output_size(src_hw: tuple[int, int], size: tuple[int, int] | None) -> tuple[int, int]:
    """``(width, height)`` of the clip, both even (H.264 / yuv420p needs that).

    Default: the source's aspect with the longest side at most
    :data:`DEFAULT_MAX_SIDE`.

    Raises:
        CameraError: a requested size under 16 px or over 4096 px.
    """
    if size is None:
        h, w = src_hw
        scale = min(1.0, DEFAULT_MAX_SIDE / max(h, w))
        width, height = w * scale, h * scale
    else:
        width, height = size
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise CameraError(f"size must be 16..4096 px per side, got {width}x{height}")
    return max(16, int(width) // 2 * 2), max(16, int(height) // 2 * 2)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    a = to_rgb(image, error=CameraError)
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise CameraError(f"image: at least 2x2 pixels, got shape {a.shape}")
    return a


class CameraRenderer:
    """Renders frames of one still through a :class:`CameraPath`.

    Args:
        image: ``[H, W, 3]`` uint8 RGB, or float32 0..1.
        width, height: output size, px (even).
        max_zoom: largest zoom the path will use (sets the pre-shrink size).
        focus: subject point ``(x, y)`` as fractions of the source (default
            the centre); the aspect crop is centred on it, zooms keep it in
            place, dolly and orbit warps centre on it.
        interpolation: ``"linear"`` (bilinear) or ``"cubic"``.
    """

    def __init__(self, image: np.ndarray, width: int, height: int, max_zoom: float = 1.0,
                 focus: tuple[float, float] | None = None, interpolation: str = "linear"):
        import cv2

        self._cv2 = cv2
        src = _as_uint8(image)
        self.width, self.height = int(width), int(height)
        if interpolation not in ("linear", "cubic"):
            raise CameraError(f"interpolation must be 'linear' or 'cubic', not {interpolation!r}")
        self.interp = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_CUBIC
        sh, sw = src.shape[:2]
        # Largest window of the output's aspect inside the source, centred.
        aspect = self.width / self.height
        bw, bh = (sw, sw / aspect) if sw / sh <= aspect else (sh * aspect, sh)
        # Pre-shrink (area filter) so the window holds no more than
        # width * max_zoom pixels: sampling then never skips source pixels.
        shrink = min(1.0, self.width * max(max_zoom, 1.0) / bw)
        if shrink < 1.0:
            src = cv2.resize(src, (max(2, round(sw * shrink)), max(2, round(sh * shrink))), interpolation=cv2.INTER_AREA)
            sx, sy = src.shape[1] / sw, src.shape[0] / sh
            bw, bh = bw * sx, bh * sy
            sh, sw = src.shape[:2]
        self.src = src
        fx, fy = focus if focus is not None else (0.5, 0.5)
        # The aspect crop is centred on the focus as far as the photo allows.
        x0 = min(max(fx * sw - bw / 2.0, 0.0), sw - bw)
        y0 = min(max(fy * sh - bh / 2.0, 0.0), sh - bh)
        self.base = (x0, y0, bw, bh)  # window x0, y0, w, h in source px
        # Focus in window-normalised coordinates, kept inside the window.
        self.focus = (float(np.clip((fx * sw - self.base[0]) / bw, 0, 1)), float(np.clip((fy * sh - self.base[1]) / bh, 0, 1)))
        # Output pixel centres in 0..1 (float32 grids for the warp case).
        self._qx = ((np.arange(self.width, dtype=np.float32) + 0.5) / self.width)[None, :]
        self._qy = ((np.arange(self.height, dtype=np.float32) + 0.5) / self.height)[:, None]

    def _window_coords(self, zoom: float, dx: float, dy: float):
        """Window-normalised coordinates of the output pixel centres (before warps)."""
        # Zoom is anchored on the focus point (it keeps its place in the frame),
        # the offsets then move the window across its free margin; the clip
        # keeps the window inside the source.
        half, lo, hi = (1.0 - 1.0 / zoom) / 2.0, 0.5 / zoom, 1.0 - 0.5 / zoom
        fx, fy = self.focus
        cx = min(max(fx + (0.5 - fx) / zoom + dx * half, lo), hi)
        cy = min(max(fy + (0.5 - fy) / zoom + dy * half, lo), hi)
        return cx + (self._qx - 0.5) / zoom, cy + (self._qy - 0.5) / zoom

    def source_coords(self, zoom: float, dx: float, dy: float, dolly: float = 0.0, orbit: float = 0.0,
                      clip: bool = True):
        """Source pixel coordinates ``(map_x, map_y)`` sampled by one frame;
        ``[H, W]`` float32 for warped frames, broadcastable rows/columns otherwise.
        ``clip=False`` returns them before the final clip to the image (used by
        tests to show that the geometry alone stays inside)."""
        ux, uy = self._window_coords(zoom, dx, dy)
        if dolly or orbit:
            ux, uy = np.broadcast_arrays(ux, uy)
            fx, fy = self.focus
            aspect = self.width / self.height
            # Subject weight: a Gaussian around the focus (sigma 0.22 of the height).
            w = np.exp(-(((ux - fx) * aspect) ** 2 + (uy - fy) ** 2) / (2 * 0.22 ** 2)).astype(np.float32)
            if dolly:
                # Convex combination towards the focus: stays inside the window.
                m = 1.0 / (1.0 + dolly * w)
                ux, uy = fx + (ux - fx) * m, fy + (uy - fy) * m
            if orbit:
                ux = ux + orbit * (1.0 - w) - 0.35 * orbit * w
        x0, y0, bw, bh = self.base
        mx, my = x0 + ux * bw - 0.5, y0 + uy * bh - 0.5
        if clip:
            mx, my = np.clip(mx, 0, self.src.shape[1] - 1), np.clip(my, 0, self.src.shape[0] - 1)
        return mx.astype(np.float32), my.astype(np.float32)

    def frame(self, zoom: float, dx: float, dy: float, dolly: float = 0.0, orbit: float = 0.0) -> np.ndarray:
        """One frame, ``[height, width, 3]`` uint8."""
        cv2 = self._cv2
        if not dolly and not orbit:
            mx, my = self.source_coords(zoom, dx, dy, clip=False)
            # Pure zoom + shift is affine: dst (x, y) -> src (a x + b, c y + d).
            ax = (mx[0, -1] - mx[0, 0]) / max(self.width - 1, 1)
            ay = (my[-1, 0] - my[0, 0]) / max(self.height - 1, 1)
            m = np.array([[ax, 0.0, mx[0, 0]], [0.0, ay, my[0, 0]]], dtype=np.float64)
            return cv2.warpAffine(self.src, m, (self.width, self.height), flags=self.interp | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
        # The warp is smooth (a Gaussian of sigma ~0.2 frame), so it is computed
        # on a grid of every 8th pixel and upsampled bilinearly (error far below
        # 0.01 px), then converted to OpenCV's fixed-point maps for a fast remap.
        mx, my = self._coarse(self.source_coords, zoom, dx, dy, dolly, orbit)
        m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        return cv2.remap(self.src, m1, m2, self.interp, borderMode=cv2.BORDER_REPLICATE)

    def _coarse(self, fn, *args):
        """Evaluate ``fn`` (a map function of this renderer) on a coarse grid
        and upsample it to full size with ``cv2.resize``. The grid has one
        extra sample beyond each edge and sits where ``cv2.resize``'s
        half-pixel convention puts it, so every full-size pixel is interpolated
        (never clamped) between its four neighbours."""
        cv2 = self._cv2
        qx, qy, step = self._qx, self._qy, 8
        gw, gh = -(-self.width // step) + 2, -(-self.height // step) + 2
        # Coarse sample k sits at full-size pixel (k - 1) * step + (step - 1) / 2.
        self._qx = (((np.arange(gw) - 1) * step + (step - 1) / 2 + 0.5) / self.width).astype(np.float32)[None, :]
        self._qy = (((np.arange(gh) - 1) * step + (step - 1) / 2 + 0.5) / self.height).astype(np.float32)[:, None]
        try:
            cx, cy = fn(*args, clip=False)
        finally:
            self._qx, self._qy = qx, qy
        big = (gw * step, gh * step)
        sl = (slice(step, step + self.height), slice(step, step + self.width))
        hi_x, hi_y = self.src.shape[1] - 1, self.src.shape[0] - 1
        mx = np.clip(cv2.resize(cx, big, interpolation=cv2.INTER_LINEAR)[sl], 0, hi_x)
        my = np.clip(cv2.resize(cy, big, interpolation=cv2.INTER_LINEAR)[sl], 0, hi_y)
        return np.ascontiguousarray(mx), np.ascontiguousarray(my)


def render_frames(image: np.ndarray, motions: list[tuple[str, float]] | None = None, seconds: float = DEFAULT_SECONDS,
                  fps: float = DEFAULT_FPS, size: tuple[int, int] | None = None, focus: tuple[float, float] | None = None,
                  seed: int = 0, interpolation: str = "linear",
                  interrupt: InterruptFn | None = None) -> Iterator[np.ndarray]:
    """Yield the clip's frames, each ``[H, W, 3]`` uint8 RGB.

    Args:
        image: the still, ``[H, W, 3]`` uint8 or float32 0..1.
        motions: up to two ``(name, strength 0..1)``; names from :data:`MOTIONS`.
        seconds, fps: clip length; ``round(seconds * fps)`` frames.
        size: ``(width, height)`` px or None (see :func:`output_size`).
        focus: subject point as fractions of the source (default centre).
        seed: handheld-shake seed.
        interrupt: checked before each frame; True stops with
            :class:`~soulid.soul.errors.Interrupted`.

    Raises:
        CameraError: bad motion, size, length or image.
        Interrupted: ``interrupt()`` returned True.
    """
    motions = list(motions or [])
    if len(motions) > 2:
        raise CameraError(f"at most two motions at once, got {len(motions)}")
    if not (0 < seconds <= 60) or not (1 <= fps <= 120):
        raise CameraError(f"seconds must be in (0, 60] and fps in [1, 120]; got {seconds} s at {fps} fps")
    n = max(1, int(round(seconds * fps)))
    src = _as_uint8(image)
    width, height = output_size(src.shape[:2], size)
    path = camera_path(motions, n, fps, seed)
    r = CameraRenderer(src, width, height, float(path.zoom.max() * (1 + path.dolly.max())), focus, interpolation)
    for i in range(n):
        if interrupt is not None and interrupt():
            raise Interrupted(f"camera render interrupted at frame {i} of {n}")
        yield r.frame(float(path.zoom[i]), float(path.dx[i]), float(path.dy[i]), float(path.dolly[i]), float(path.orbit[i]))


@dataclass
class ClipInfo:
    """A written clip: path, frame rate, frame count and size in px."""

    path: Path
    fps: float
    frames: int
    width: int
    height: int


def _prefetch(frames: Iterator[np.ndarray], depth: int = 6) -> Iterator[np.ndarray]:
    """Run ``frames`` in a worker thread, ``depth`` frames ahead: OpenCV and
    x264 release the GIL, so rendering overlaps encoding on a second core."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for f in frames:
                if stop.is_set():
                    return
                q.put(f)
            q.put(done)
        except BaseException as e:  # handed to the consumer, re-raised there
            q.put(e)

    t = threading.Thread(target=work, name="soulid-camera-render", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def write_mp4(frames: Iterator[np.ndarray], path: str | os.PathLike, fps: float, crf: int = 18,
              preset: str = "superfast", progress: ProgressFn | None = None, total: int | None = None) -> ClipInfo:
    """Encode ``[H, W, 3]`` uint8 RGB frames to an H.264 / yuv420p MP4 with
    PyAV, atomically (temp file in the same folder, then rename).

    RGB -> YUV 4:2:0 is OpenCV's BT.601 limited-range conversion (the same
    matrix and range as FFmpeg's swscale default, about 5x faster here).

    Args:
        frames: iterable of equal-size frames with even width and height;
            consumed in a worker thread (see :func:`_prefetch`).
        fps: frame rate (integer or fraction).
        crf: x264 constant rate factor (lower = better; 18 is visually lossless).
        preset: x264 speed preset.
        progress: ``progress(fraction, message)`` (:mod:`soulid.soul.progress`)
            about every 5 % of ``total`` frames (every 10 frames, fraction
            None, when ``total`` is not given).
        total: the number of frames expected, for ``progress``.

    Raises:
        CameraError: no frames, odd or changing size.
    """
    import av
    import cv2

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    count, width, height = 0, 0, 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for frame in _prefetch(iter(frames)):
                if stream is None:
                    height, width = frame.shape[:2]
                    if width % 2 or height % 2:
                        raise CameraError(f"{path.name}: H.264 yuv420p needs even sizes, got {width}x{height}")
                    stream = container.add_stream("libx264", rate=rate)
                    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                    stream.options = {"crf": str(crf), "preset": preset}
                    stream.codec_context.thread_count = 0
                elif frame.shape[:2] != (height, width):
                    raise CameraError(f"{path.name}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, not {width}x{height}")
                yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
                count += 1
                if count % max(1, (total or 200) // 20) == 0 or count == total:
                    report(progress, count / total if total else None,
                           f"camera: frame {count}/{total}" if total else f"camera: frame {count}")
            if stream is None:
                raise CameraError(f"{path.name}: no frames to write")
            container.mux(stream.encode(None))
    return ClipInfo(path, float(rate), count, width, height)


def render_clip(image: np.ndarray, out: str | os.PathLike, motions: list[tuple[str, float]] | None = None,
                seconds: float = DEFAULT_SECONDS, fps: float = DEFAULT_FPS, size: tuple[int, int] | None = None,
                focus: tuple[float, float] | None = None, seed: int = 0, interpolation: str = "linear",
                crf: int = 18, progress: ProgressFn | None = None,
                interrupt: InterruptFn | None = None) -> ClipInfo:
    """Render a still into an MP4 at ``out``; see :func:`render_frames` for the
    arguments and errors, :func:`write_mp4` for the encoding."""
    n = max(1, int(round(seconds * fps)))
    frames = render_frames(image, motions, seconds, fps, size, focus, seed, interpolation, interrupt)
    return write_mp4(frames, out, fps, crf=crf, progress=progress, total=n)


def animate_still(req, out: str | os.PathLike, progress: ProgressFn | None = None,
                  interrupt: InterruptFn | None = None, focus: tuple[float, float] | None = None):
    """DoP Animate on the camera engine: ``req`` (an
    :class:`~soulid.backends.base.AnimateRequest`: image, motions, seconds,
    fps, size, seed) into an MP4 at ``out``, centred on ``focus`` (fractions
    of width and height) or on the largest face. No model weights; nodes and
    the local backend both call this.

    Returns:
        :class:`~soulid.backends.base.VideoResult` (``info``: engine, motions).

    Raises:
        CameraError: unknown motion, bad image, size or length.
        Interrupted: ``interrupt()`` returned True.
    """
    from .base import VideoResult

    motions = [parse_motion(f"{n}:{s}") if ":" not in str(n) else parse_motion(n) for n, s in req.motions]
    img = to_rgb(req.image, error=CameraError)
    info = render_clip(img, out, motions, req.seconds, req.fps, req.size, focus or face_focus(img),
                       seed=req.seed or 0, progress=progress, interrupt=interrupt)
    return VideoResult(info.path, info.fps, info.frames, info.width, info.height,
                       info={"engine": "camera", "motions": motions})


def face_focus(img: np.ndarray) -> tuple[float, float] | None:
    """Centre of the largest face (dlib, on a <= 512 px copy) as fractions, or None."""
    try:
        from ..soul.analysis import get_analyzer
        from ..soul.imageio import downscale

        small = downscale(img, 512)
        face = get_analyzer("dlib").largest_face(small)
    except SoulIDError:
        return None
    if face is None:
        return None
    h, w = small.shape[:2]
    return (float((face.box[0] + face.box[2]) / 2 / w), float((face.box[1] + face.box[3]) / 2 / h))


def motion_table() -> list[dict]:
    """``[{"name", "description", "prompt"}]`` for listings (CLI ``--list-motions``)."""
    return [{"name": m.name, "description": m.description, "prompt": m.prompt} for m in MOTIONS.values()]


__all__ = [
    "MOTIONS", "ALIASES", "MotionSpec", "CameraPath", "CameraRenderer", "CameraError", "ClipInfo",
    "camera_path", "motion_spec", "parse_motion", "render_frames", "render_clip", "write_mp4",
    "output_size", "motion_table", "ease_in_out", "ease_out_expo", "animate_still", "face_focus",
]
