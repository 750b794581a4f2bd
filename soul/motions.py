"""Motion presets for DoP Animate: the local camera moves, and Higgsfield's
motions list matched by name.

The local moves are named here, in the core (:data:`LOCAL_MOVES`, with their
descriptions, prompt wording and other spellings); the camera engine
(:mod:`soulid.backends.camera`) reads this table and adds a camera path
to each, so the core imports no backend and there is one list of moves.

Remote motions come from ``GET /v1/motions`` (items ``{"id", "name",
"description", "preview_url", ...}``; cached 24 h like the style lists, see
:func:`soulid.soul.presets.cached_lists`) and are matched to local moves by
name (``"Dolly In"`` == ``dolly_in``), so a workflow that names a local move
also runs on the cloud. Strength is 0..1 (Higgsfield's motion ``strength``;
locally it scales the move's amplitude).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


from .presets import CACHE_MAX_AGE, FetchJson, PresetError, cached_lists, normalise_name

MOTIONS_PATH = "/v1/motions"
MOTIONS_CACHE_FILE = "higgsfield_motions.json"


@dataclass(frozen=True)
class LocalMove:
    """A local camera move: its name, a one-line description, the same move in
    words for image-to-video models, and other spellings (e.g. ``arc_right``,
    ``360_orbit``), which are also matched to Higgsfield's motion names with
    :func:`normalise_name`."""

    name: str
    description: str
    prompt: str = ""
    aliases: tuple[str, ...] = ()


#: The local camera moves, in listing order: one name per move everywhere
#: (CLI, nodes, README). Strength 1 is the nominal amount; 0 is still.
LOCAL_MOVES: tuple[LocalMove, ...] = (
    LocalMove("zoom_in", "slow push-in zoom (up to 1.35x)", "slow smooth zoom in on the subject"),
    LocalMove("zoom_out", "slow pull-back zoom (from 1.35x)", "slow smooth zoom out revealing the scene"),
    LocalMove("pan_left", "camera pans to the left", "the camera pans slowly to the left"),
    LocalMove("pan_right", "camera pans to the right", "the camera pans slowly to the right"),
    LocalMove("tilt_up", "camera tilts up", "the camera tilts slowly upward"),
    LocalMove("tilt_down", "camera tilts down", "the camera tilts slowly downward"),
    LocalMove("dolly_in", "dolly towards the subject (subject grows faster than the background)",
              "dolly in: the camera moves towards the subject, background perspective shifts", ("push_in",)),
    LocalMove("dolly_out", "dolly away from the subject", "dolly out: the camera moves back away from the subject",
              ("pull_out",)),
    LocalMove("crash_zoom", "fast punch-in zoom (2.6x) that settles", "sudden fast crash zoom onto the face",
              ("crash_zoom_in",)),
    LocalMove("orbit_left", "orbit around the subject to the left (parallax approximation)",
              "the camera orbits around the subject to the left, parallax between subject and background",
              ("arc_left",)),
    LocalMove("orbit_right", "orbit around the subject to the right (parallax approximation)",
              "the camera orbits around the subject to the right, parallax between subject and background",
              ("orbit", "arc_right", "360_orbit")),
    LocalMove("static", "static shot with subtle handheld shake", "static handheld shot, subtle natural camera shake",
              ("handheld", "handheld_static")),
)


def local_moves() -> dict[str, LocalMove]:
    """:data:`LOCAL_MOVES` by name, in order."""
    return {m.name: m for m in LOCAL_MOVES}


def provider_names(move: LocalMove) -> list[str]:
    """The Higgsfield DoP motion names this move matches, as Higgsfield
    spells them (``dolly_in`` -> ``["Dolly In", "Push In"]``): the static
    mapping, known without credentials; the ids come with the motions list."""
    return [" ".join(w.capitalize() for w in n.split("_")) for n in (move.name,) + move.aliases]


def move_aliases() -> dict[str, str]:
    """Other spelling -> move name, for every alias of :data:`LOCAL_MOVES`."""
    return {a: m.name for m in LOCAL_MOVES for a in m.aliases}


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
    for mv in local_moves().values():
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
    moves = local_moves()
    for m in motions:
        keys = {normalise_name(m.name), normalise_name(m.remote_name)}
        if m.kind == "local":
            keys |= {normalise_name(a) for a in moves[m.name].aliases}
        if k in keys:
            return m.with_strength(strength)
    raise PresetError(f"motion {name!r} is unknown; local moves: {', '.join(moves)}")


__all__ = ["LocalMove", "LOCAL_MOVES", "MotionPreset", "local_moves", "move_aliases", "provider_names", "list_motions", "get_motion"]
