"""The ID photo sheet: a 4-in-1 reference of a Soul ID (front, left 45°,
right 45°, smiling), generated through any backend and composited on a
neutral background with labels.

The core builds no backend request: :func:`view_requests` says what each view
needs (prompt, negative prompt, seed, aspect) and :func:`make_id_sheet` calls a
``generate_view`` callable for each; :func:`soulid.backends.idsheet.view_generator`
makes one from a backend.

The sheet is also an input for a new Soul ID: :func:`split_sheet` cuts it back
into its four views and :func:`sheet_inputs` turns them into the
``(label, [H, W, 3] uint8)`` pairs :func:`soulid.soul.create.create_soul_id`
accepts. Four well-lit, known-pose views are what face-identity adapters
(IP-Adapter FaceID, InstantID) and provider Soul IDs benefit from most.

Directions follow the viewer: "left 45°" means the face is turned toward the
image's left (head yaw about -45°, see :class:`soulid.soul.analysis.HeadPose`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .imageio import to_rgb
from .grid import NEUTRAL, GridLayout, label_grid
from .progress import InterruptFn, ProgressFn, check, report


@dataclass(frozen=True)
class SheetView:
    """One view of the sheet.

    Attributes:
        key: ``front | left45 | right45 | smiling``.
        label: caption on the sheet.
        prompt: pose and expression wording for the generation prompt.
        yaw: target head yaw in degrees (> 0: turned to the image's right).
    """

    key: str
    label: str
    prompt: str
    yaw: float


VIEWS: tuple[SheetView, ...] = (
    SheetView("front", "Front", "passport-style head-and-shoulders portrait, facing the camera straight on, "
              "neutral expression, mouth closed, eyes open looking into the lens", 0.0),
    SheetView("left45", "Left 45°", "head-and-shoulders portrait, head turned 45 degrees toward the left of the "
              "frame, three-quarter view, neutral expression, both eyes visible", -45.0),
    SheetView("right45", "Right 45°", "head-and-shoulders portrait, head turned 45 degrees toward the right of the "
              "frame, three-quarter view, neutral expression, both eyes visible", 45.0),
    SheetView("smiling", "Smiling", "head-and-shoulders portrait facing the camera, natural open smile showing "
              "teeth, eyes open", 0.0),
)
#: Shared wording: an even, shadowless reference look so only the face varies.
BASE_PROMPT = ("photo of the same person, plain light-grey seamless studio background, soft even frontal "
               "light from a large softbox, no hat, no glasses, hair off the face, sharp focus, 85mm lens")
NEGATIVE = ("sunglasses, hat, hands on face, heavy makeup, strong shadows, blur, extra people, "
            "cropped forehead, deformed face")
#: Sheet geometry: 2 x 2 tiles of 512 px with a 36 px label band.
TILE, PAD, CAPTION = 512, 16, 40
LAYOUT = GridLayout(columns=2, tile=TILE, pad=PAD, caption=CAPTION)


@dataclass
class IDSheet:
    """An ID photo sheet.

    Attributes:
        image: the composite, ``[H, W, 3]`` uint8 RGB.
        views: the four source images in :data:`VIEWS` order, ``[h, w, 3]`` uint8.
        labels: their captions.
        info: per view, what the backend reported (request id, cost...).
    """

    image: np.ndarray
    views: list[np.ndarray]
    labels: list[str]
    info: list[dict] = field(default_factory=list)


def view_prompt(view: SheetView, prompt: str = "") -> str:
    """The full prompt of one view: user text (e.g. outfit), pose wording, base look."""
    return ", ".join(p for p in (prompt.strip(), view.prompt, BASE_PROMPT) if p)


@dataclass(frozen=True)
class ViewRequest:
    """What one view asks of a generator: ``prompt``, ``negative_prompt``,
    ``seed`` (the same for all views, so light and wardrobe match) and
    ``aspect`` (``"1:1"``)."""

    view: SheetView
    prompt: str
    negative_prompt: str
    seed: int | None
    aspect: str = "1:1"


#: ``generate_view(request, interrupt) -> (image [H, W, 3] uint8 or float 0..1, info dict)``.
ViewFn = Callable[[ViewRequest, InterruptFn | None], tuple[np.ndarray, dict]]


def view_requests(prompt: str = "", seed: int | None = None) -> list[ViewRequest]:
    """One :class:`ViewRequest` per view of :data:`VIEWS`."""
    return [ViewRequest(v, view_prompt(v, prompt), NEGATIVE, seed) for v in VIEWS]


def compose_sheet(views: list[np.ndarray], labels: list[str] | None = None, background=NEUTRAL) -> np.ndarray:
    """Composite four views into the 2 x 2 sheet.

    Args:
        views: four ``[H, W, 3]`` images (uint8 or float 0..1), any size; each
            is fitted into a 512 px square.
        labels: captions (default: the :data:`VIEWS` labels).

    Returns:
        ``[1152, 1072, 3]`` uint8 RGB (two rows of 512 px tiles with a 40 px
        label band each, 16 px gaps).

    Raises:
        ValueError: not exactly four views.
    """
    if len(views) != len(VIEWS):
        raise ValueError(f"an ID sheet needs {len(VIEWS)} views (front, left 45°, right 45°, smiling), got {len(views)}")
    labels = labels or [v.label for v in VIEWS]
    return label_grid(views, [[lab] for lab in labels], LAYOUT, background=background, font_size=24)


def split_sheet(sheet: np.ndarray) -> list[np.ndarray]:
    """Cut a sheet made by :func:`compose_sheet` back into its four 512 px
    tiles (neutral borders included), in :data:`VIEWS` order.

    Raises:
        ValueError: the image is not of the sheet's size.
    """
    a = to_rgb(sheet)
    want = LAYOUT.size(len(VIEWS))
    if (a.shape[1], a.shape[0]) != want:
        raise ValueError(f"not an ID sheet: size {a.shape[1]}x{a.shape[0]}, expected {want[0]}x{want[1]}")
    out = []
    for i in range(len(VIEWS)):
        x0, y0, x1, y1 = LAYOUT.box(i)
        out.append(np.ascontiguousarray(a[y0:y1, x0:x1]))
    return out


def sheet_inputs(sheet: np.ndarray | IDSheet, name: str = "idsheet") -> list[tuple[str, np.ndarray]]:
    """``(label, [H, W, 3] uint8)`` pairs for :func:`create_soul_id` from a
    sheet image or an :class:`IDSheet` (its full-resolution views are used)."""
    views = [to_rgb(v) for v in sheet.views] if isinstance(sheet, IDSheet) else split_sheet(sheet)
    return [(f"{name}_{v.key}.png", img) for v, img in zip(VIEWS, views)]


def make_id_sheet(generate_view: ViewFn, prompt: str = "", seed: int | None = None,
                  progress: ProgressFn | None = None, interrupt: InterruptFn | None = None) -> IDSheet:
    """Generate the four views through ``generate_view`` and composite them.

    Args:
        generate_view: see :data:`ViewFn`; e.g.
            ``soulid.backends.idsheet.view_generator(backend, soul)``.
        prompt: extra wording for every view (outfit, age, hair).
        seed: one seed for all views (None: the generator's random).
        progress: ``(fraction 0..1, message)`` (:mod:`soulid.soul.progress`).

    Raises:
        whatever ``generate_view`` raises (credentials, provider errors, budget);
        Interrupted: ``interrupt()`` returned True between views.
    """
    views, info = [], []
    for i, req in enumerate(view_requests(prompt, seed)):
        check(interrupt, f"ID sheet view {req.view.label}")
        report(progress, i / len(VIEWS), f"ID sheet: {req.view.label}")
        image, facts = generate_view(req, interrupt)
        views.append(to_rgb(image))
        info.append({"view": req.view.key, **dict(facts or {})})
    report(progress, 1.0, "ID sheet done")
    labels = [v.label for v in VIEWS]
    return IDSheet(compose_sheet(views, labels), views, labels, info)
