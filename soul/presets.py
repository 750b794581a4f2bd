"""Style presets: the Soul style catalog, user overrides and remote-id resolution.

A :class:`StylePreset` is a look picked by name ("Movie", "90's Editorial"...).
It carries two things:

* the **local recipe**, prompt language the local backend (diffusers) follows:
  ``lighting`` (the single most important cue, so it comes first in the
  prompt), ``framing`` and lens, ``palette``, ``material`` and texture, and
  ``mood``, plus a ``scene`` cue, a negative prompt, a suggested aspect ratio
  ``"W:H"`` and a classifier-free guidance scale;
* the **remote ids** of the same style on Higgsfield, found by name in the
  provider's published style lists (``GET /v1/text2image/soul-styles`` for
  Soul, ``GET /v1/text2image/soul-styles/v2`` for Soul 2; items look like
  ``{"id": "<uuid>", "name": "Realistic", "description": ..., "preview_url": ...}``,
  see https://docs.higgsfield.ai/docs/models/soul-standard.md). The lists are
  cached for 24 h in :func:`soulid.soul.paths.cache_dir`; offline the catalog
  still works and each preset says its id is unresolved.

The built-in catalog is ``soul/data/styles.json`` (every style name WaveSpeed
publishes for Higgsfield Soul). Users add or override presets in
``$SOULID_PRESETS``, else ``<config dir>/presets.json`` or ``presets.yaml``
(see :func:`user_presets_path`): fields given there win over the catalog's.

Names are matched case-, accent- and punctuation-insensitively
(:func:`normalise_name`): ``"90’s Editorial"`` == ``"90's editorial"``.
"""
from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from .errors import SoulIDError
from .paths import atomic_write_bytes, cache_dir, config_dir

#: Model families a preset can belong to.
FAMILIES = ("soul", "soul_2", "cinema")
#: style-list key -> Higgsfield paths to try in order (the first that answers
#: wins). Public clients call the Soul 2 list ``/v1/text2image/soul-styles/v2``;
#: the stand-in serves ``/v2/text2image/soul-styles``. The Higgsfield backend
#: resolves style ids through these same paths (``HiggsfieldBackend.style_lists``).
STYLE_LIST_PATHS = {
    "soul": ("/v1/text2image/soul-styles",),
    "soul_2": ("/v1/text2image/soul-styles/v2", "/v2/text2image/soul-styles"),
}
#: Which lists to consult, in order, for each family (Soul Cinema has no style
#: list of its own; its looks are Soul styles).
LOOKUP_ORDER = {"soul": ("soul", "soul_2"), "soul_2": ("soul_2", "soul"), "cinema": ("soul", "soul_2")}
#: Lifetime of the cached style lists, seconds.
CACHE_MAX_AGE = 24 * 3600
CACHE_FILE = "higgsfield_soul_styles.json"
#: Recipe fields, in the order they are written into a prompt (lighting first).
RECIPE_FIELDS = ("lighting", "scene", "framing", "palette", "material", "mood")
_DATA = Path(__file__).resolve().parent / "data" / "styles.json"
_ASPECT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")

#: ``fetch_json(path) -> parsed JSON`` for a path on the provider's API
#: (``"/v1/text2image/soul-styles"``); raises on any failure.
FetchJson = Callable[[str], "list | dict"]


class PresetError(SoulIDError):
    """A preset name is unknown, or a preset file or field is invalid."""


# --------------------------------------------------------------------- names
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u201c": '"', "\u201d": '"'})


def normalise_name(name: str) -> str:
    """Key for matching style names: NFKC, accents dropped, case-folded, and
    every character that is not a letter or digit removed.

    ``"90’s Editorial"``, ``"90's editorial"`` and ``"90s-Editorial"`` all give
    ``"90seditorial"``; ``"Mt. Fuji"`` gives ``"mtfuji"``.
    """
    s = unicodedata.normalize("NFKD", str(name).translate(_QUOTES))
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    return "".join(c for c in s if c.isalnum())


# -------------------------------------------------------------------- preset
@dataclass
class StylePreset:
    """One style preset.

    Attributes:
        name: display name, as published (``"90’s Editorial"``).
        family: ``soul | soul_2 | cinema`` (:data:`FAMILIES`).
        lighting, scene, framing, palette, material, mood: recipe phrases.
        negative: style-specific negative prompt (the catalog's base negative
            is appended by :meth:`negative_prompt`).
        aspect: suggested aspect ratio ``"W:H"``.
        guidance: suggested classifier-free guidance scale (about 4..7).
        strength: how strongly the look is applied, 0..1 (the Higgsfield
            ``style_strength``; locally it decides how many recipe phrases are
            used, see :meth:`prompt`).
        remote_ids: style-list family -> remote style id (uuid), e.g.
            ``{"soul": "…", "soul_2": "…"}``; empty when unresolved.
        source: ``"catalog"``, ``"user"`` or ``"catalog+user"``.
        ids_pinned: the user file gave the remote ids; resolution keeps them.
    """

    name: str
    family: str = "soul"
    lighting: str = ""
    scene: str = ""
    framing: str = ""
    palette: str = ""
    material: str = ""
    mood: str = ""
    negative: str = ""
    aspect: str = "3:4"
    guidance: float = 5.0
    strength: float = 1.0
    remote_ids: dict = field(default_factory=dict)
    source: str = "catalog"
    ids_pinned: bool = False
    base_negative: str = ""

    @property
    def key(self) -> str:
        return normalise_name(self.name)

    @property
    def remote_id(self) -> str | None:
        """The Higgsfield style id for this preset's family, or None when unresolved."""
        for fam in LOOKUP_ORDER.get(self.family, ("soul", "soul_2")):
            if self.remote_ids.get(fam):
                return self.remote_ids[fam]
        return None

    @property
    def resolved(self) -> bool:
        return self.remote_id is not None

    def with_strength(self, strength: float) -> "StylePreset":
        """A copy with ``strength`` (clamped to 0..1)."""
        return replace(self, strength=min(1.0, max(0.0, float(strength))))

    def recipe(self) -> dict:
        """The local recipe fields as a dict."""
        return {k: getattr(self, k) for k in RECIPE_FIELDS + ("negative", "aspect", "guidance")}

    def prompt(self, subject: str = "", strength: float | None = None) -> str:
        """``subject`` followed by the recipe phrases, lighting first.

        ``strength`` (default :attr:`strength`) in 0..1 picks how much of the
        recipe is used: 0 returns ``subject`` alone; below 1 the later phrases
        (mood, material, palette...) are dropped first, since the order of
        :data:`RECIPE_FIELDS` is the order of importance.
        """
        s = self.strength if strength is None else min(1.0, max(0.0, float(strength)))
        parts = [getattr(self, k) for k in RECIPE_FIELDS if getattr(self, k)]
        keep = round(len(parts) * s)
        return ", ".join([p for p in [subject.strip()] if p] + parts[:keep])

    def negative_prompt(self, extra: str = "") -> str:
        """Style negative + the catalog's base negative + ``extra``, comma-joined."""
        return ", ".join(p for p in (self.negative, self.base_negative, extra.strip()) if p)

    def aspect_ratio(self) -> float:
        """Width / height of :attr:`aspect`."""
        w, h = parse_aspect(self.aspect, f"preset {self.name!r} field 'aspect'")
        return w / h

    def size(self, megapixels: float = 1.0, multiple: int = 64) -> tuple[int, int]:
        """``(width, height)`` px of about ``megapixels`` at :attr:`aspect`,
        rounded to ``multiple`` (latent-friendly for SD/SDXL: 64)."""
        r = self.aspect_ratio()
        h = (megapixels * 1e6 / r) ** 0.5
        w = h * r
        return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)

    def nearest_aspect(self, allowed: list[str]) -> str:
        """The ratio of ``allowed`` closest (in log scale) to :attr:`aspect`,
        for providers with a fixed list (Higgsfield: 9:16, 16:9, 4:3, 3:4, 1:1, 2:3, 3:2)."""
        import math

        r = math.log(self.aspect_ratio())
        return min(allowed, key=lambda a: abs(math.log(_ratio(a)) - r))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("base_negative")
        d["remote_id"] = self.remote_id
        d["resolved"] = self.resolved
        return d


def _ratio(a: str) -> float:
    w, h = parse_aspect(a, "aspect")
    return w / h


def parse_aspect(text: str, what: str = "aspect") -> tuple[float, float]:
    """``"3:4"`` -> ``(3.0, 4.0)``.

    Raises:
        PresetError: not ``W:H`` with positive numbers (message names ``what``).
    """
    m = _ASPECT.match(str(text))
    if not m or float(m.group(1)) <= 0 or float(m.group(2)) <= 0:
        raise PresetError(f"{what}: {text!r} is not an aspect ratio like '3:4'")
    return float(m.group(1)), float(m.group(2))


_USER_FIELDS = set(RECIPE_FIELDS) | {"name", "family", "negative", "aspect", "guidance", "strength", "remote_ids", "remote_id"}


def _check_entry(entry: dict, where: str) -> dict:
    """Validate one preset mapping from the catalog or a user file; return the
    fields to apply. ``where`` names the file and entry for messages."""
    if not isinstance(entry, dict):
        raise PresetError(f"{where}: a preset must be a mapping of fields, not {type(entry).__name__}")
    unknown = set(entry) - _USER_FIELDS
    if unknown:
        raise PresetError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_USER_FIELDS))})")
    out = dict(entry)
    if "name" in out and (not isinstance(out["name"], str) or not normalise_name(out["name"])):
        raise PresetError(f"{where}: field 'name' must be a non-empty string")
    if "family" in out and out["family"] not in FAMILIES:
        raise PresetError(f"{where}: field 'family' is {out['family']!r}; must be one of {', '.join(FAMILIES)}")
    for k in set(RECIPE_FIELDS) | {"negative"}:
        if k in out and not isinstance(out[k], str):
            raise PresetError(f"{where}: field {k!r} must be text")
    if "aspect" in out:
        parse_aspect(out["aspect"], f"{where}: field 'aspect'")
    for k, lo, hi in (("guidance", 0.0, 30.0), ("strength", 0.0, 1.0)):
        if k in out:
            v = out[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
                raise PresetError(f"{where}: field {k!r} is {v!r}; must be a number in {lo}..{hi}")
            out[k] = float(v)
    if "remote_id" in out:  # shorthand: the id for the preset's own family
        rid = out.pop("remote_id")
        if not isinstance(rid, str) or not rid:
            raise PresetError(f"{where}: field 'remote_id' must be a non-empty string")
        out.setdefault("remote_ids", {})["__own__"] = rid
    if "remote_ids" in out and not isinstance(out["remote_ids"], dict):
        raise PresetError(f"{where}: field 'remote_ids' must map a family to an id")
    return out


# ------------------------------------------------------------------ catalog
def load_builtin() -> tuple[list[StylePreset], dict]:
    """The built-in catalog: ``(presets, metadata)`` from ``soul/data/styles.json``."""
    doc = json.loads(_DATA.read_text(encoding="utf-8"))
    base_neg = doc.get("base_negative", "")
    out = []
    for i, e in enumerate(doc["styles"]):
        e = _check_entry(e, f"{_DATA.name} styles[{i}]")
        out.append(StylePreset(**e, base_negative=base_neg))
    meta = {k: v for k, v in doc.items() if k != "styles"}
    return out, meta


def user_presets_path() -> Path | None:
    """The user's preset file: ``$SOULID_PRESETS`` if set, else the first of
    ``<config dir>/presets.json``, ``presets.yaml``, ``presets.yml`` that
    exists, else None."""
    env = os.environ.get("SOULID_PRESETS")
    if env:
        return Path(env)
    for n in ("presets.json", "presets.yaml", "presets.yml"):
        p = config_dir() / n
        if p.is_file():
            return p
    return None


def read_user_presets(path: str | os.PathLike) -> list[dict]:
    """Parse a user preset file (JSON, or YAML by a ``.yaml``/``.yml`` suffix).

    Accepted shapes: a list of preset mappings; ``{"presets": [...]}``; or a
    mapping of name -> fields (``{"Movie": {"guidance": 7}}``).

    Raises:
        PresetError: missing, unreadable, unparsable or badly shaped file (the
            message names the file and the entry).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(f"{p}: preset file not found (named by $SOULID_PRESETS?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(f"{p}: cannot read preset file ({e})") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # PyYAML: the well-kept YAML parser
        except ImportError:
            raise PresetError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or use presets.json") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PresetError(f"{p}: invalid YAML ({e})") from None
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise PresetError(f"{p}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    if doc is None:
        return []
    if isinstance(doc, dict) and "presets" in doc:
        doc = doc["presets"]
    if isinstance(doc, dict):
        entries = []
        for name, body in doc.items():
            if not isinstance(body, dict):
                raise PresetError(f"{p}: preset {name!r} must be a mapping of fields")
            entries.append({"name": name, **body})
        doc = entries
    if not isinstance(doc, list):
        raise PresetError(f"{p}: expected a list of presets or a mapping of name -> fields")
    return [_check_entry(e, f"{p.name} preset {e.get('name', i) if isinstance(e, dict) else i!r}") for i, e in enumerate(doc)]


def merge_user(presets: list[StylePreset], entries: list[dict], label: str = "user file") -> list[StylePreset]:
    """Apply user entries: an entry whose name matches a preset (by
    :func:`normalise_name`) overrides the fields it gives; other entries add
    new presets (they must give ``family`` and ``lighting``).

    Raises:
        PresetError: a new preset lacks ``family`` or ``lighting``.
    """
    by_key = {p.key: i for i, p in enumerate(presets)}
    out = list(presets)
    base_neg = presets[0].base_negative if presets else ""
    for e in entries:
        e = dict(e)
        if "name" not in e:
            raise PresetError(f"{label}: a preset has no 'name'")
        rids = e.pop("remote_ids", None)
        k = normalise_name(e["name"])
        if k in by_key:
            old = out[by_key[k]]
            e.pop("name")  # keep the published spelling
            new = replace(old, **e, source="catalog+user" if old.source == "catalog" else old.source)
        else:
            missing = [f for f in ("family", "lighting") if f not in e]
            if missing:
                raise PresetError(f"{label}: new preset {e['name']!r} lacks {', '.join(missing)}")
            new = StylePreset(**e, source="user", base_negative=base_neg)
            by_key[k] = len(out)
            out.append(None)  # placeholder, set below
        if rids:
            rids = dict(rids)
            own = rids.pop("__own__", None)
            new.remote_ids = {**new.remote_ids, **rids}
            if own:
                new.remote_ids[LOOKUP_ORDER[new.family][0]] = own
            new.ids_pinned = True  # user ids win over resolution
        out[by_key[k]] = new
    return out


def load_presets(family: str | None = None, user_file: str | os.PathLike | None = None,
                 with_cached_ids: bool = True) -> list[StylePreset]:
    """The catalog with user overrides and cached remote ids applied.

    Args:
        family: keep only this family (``soul | soul_2 | cinema``), or None for all.
        user_file: a preset file to use instead of :func:`user_presets_path`.
        with_cached_ids: fill :attr:`StylePreset.remote_ids` from the style-list
            cache if present (never touches the network; see :func:`resolve_remote_ids`).

    Raises:
        PresetError: unknown family, or a bad user file.
    """
    if family is not None and family not in FAMILIES:
        raise PresetError(f"family {family!r} is unknown; use one of {', '.join(FAMILIES)}")
    presets, _ = load_builtin()
    path = Path(user_file) if user_file else user_presets_path()
    if path is not None:
        presets = merge_user(presets, read_user_presets(path), label=str(path))
    if with_cached_ids:
        cached = read_cache(CACHE_FILE, max_age=None)
        if cached is not None:
            presets = apply_ids(presets, cached["lists"])
    if family is not None:
        presets = [p for p in presets if p.family == family]
    return presets


def get_preset(name: str, strength: float | None = None, presets: list[StylePreset] | None = None) -> StylePreset:
    """The preset called ``name`` (normalised match).

    Raises:
        PresetError: no such preset (the message suggests close names).
    """
    presets = load_presets() if presets is None else presets
    k = normalise_name(name)
    for p in presets:
        if p.key == k:
            return p if strength is None else p.with_strength(strength)
    import difflib

    close = difflib.get_close_matches(name, [p.name for p in presets], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise PresetError(f"style preset {name!r} is unknown{hint}")


# --------------------------------------------------------- remote resolution
def _items(doc, what: str) -> list[dict]:
    """The list of ``{id, name}`` items of a style/motion list response, which
    is a bare list or wrapped as ``{"items"|"data"|"styles"|"motions": [...]}``."""
    if isinstance(doc, dict):
        for k in ("items", "data", "styles", "motions", "results"):
            if isinstance(doc.get(k), list):
                doc = doc[k]
                break
    if not isinstance(doc, list):
        raise PresetError(f"{what}: expected a list of items, got {type(doc).__name__}")
    out = []
    for i, it in enumerate(doc):
        if isinstance(it, dict) and isinstance(it.get("name"), str) and it.get("id") not in (None, ""):
            out.append({"id": str(it["id"]), "name": it["name"], "description": it.get("description") or ""})
    return out


def index_by_name(items: list[dict]) -> dict[str, str]:
    """normalised name -> id (the first item of a name wins)."""
    out: dict[str, str] = {}
    for it in items:
        out.setdefault(normalise_name(it["name"]), it["id"])
    return out


def apply_ids(presets: list[StylePreset], lists: dict[str, list[dict]]) -> list[StylePreset]:
    """Copies of ``presets`` with :attr:`StylePreset.remote_ids` filled from
    ``lists`` (family -> items). Ids pinned in a user file are kept."""
    idx = {fam: index_by_name(items) for fam, items in lists.items()}
    out = []
    for p in presets:
        if p.ids_pinned:
            out.append(p)
            continue
        ids = {fam: ix[p.key] for fam, ix in idx.items() if p.key in ix}
        out.append(replace(p, remote_ids=ids))
    return out


def read_cache(name: str = CACHE_FILE, max_age: float | None = CACHE_MAX_AGE) -> dict | None:
    """A cached set of provider lists ``{"fetched": epoch s, "lists": {key: items}}``
    from ``<cache dir>/<name>``, or None when absent, unreadable, or older
    than ``max_age`` seconds (``None``: any age)."""
    try:
        doc = json.loads((cache_dir() / name).read_text(encoding="utf-8"))
        fetched = float(doc["fetched"])
        lists = {k: list(v) for k, v in doc["lists"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if max_age is not None and time.time() - fetched > max_age:
        return None
    return {"fetched": fetched, "lists": lists}


@dataclass
class CachedLists:
    """Provider lists fetched or read from the cache by :func:`cached_lists`.

    Attributes:
        lists: key -> items ``[{"id", "name", "description"}]`` (empty offline).
        source: ``"network"``, ``"cache"`` (fresh), ``"stale cache"`` (the
            fetch failed; an older cache was used) or ``"offline"``.
        fetched: when the lists were fetched, epoch s (None offline).
        error: why a fetch failed, else "".
    """

    lists: dict
    source: str
    fetched: float | None
    error: str = ""


def cached_lists(fetch_json: FetchJson | None, paths: dict[str, tuple[str, ...]], cache_name: str,
                 refresh: bool = False, max_age: float = CACHE_MAX_AGE) -> CachedLists:
    """Fetch provider lists (``key -> API paths to try in order``) through a cache file.

    Uses ``<cache dir>/<cache_name>`` when younger than ``max_age`` (and not
    ``refresh``); otherwise calls ``fetch_json(path)`` per path and writes the
    cache atomically. A path whose fetch fails is skipped; when all fail the
    previous cache (any age) is used, else the result is empty. Never raises
    for network trouble: the reason is in :attr:`CachedLists.error`.
    """
    fresh = None if refresh else read_cache(cache_name, max_age)
    if fresh is not None:
        return CachedLists(fresh["lists"], "cache", fresh["fetched"])
    errors, lists = [], {}
    if fetch_json is not None:
        for key, tries in paths.items():
            failed = []
            for path in tries:
                try:
                    lists[key] = _items(fetch_json(path), path)
                    break
                except Exception as e:  # network, HTTP, JSON: any failure means "not fetched"
                    failed.append(f"{path}: {type(e).__name__}: {e}")
            else:
                errors += failed
    else:
        errors.append("no connection to Higgsfield configured")
    if lists:
        now = time.time()
        atomic_write_bytes(cache_dir() / cache_name, json.dumps({"fetched": now, "lists": lists}, ensure_ascii=False).encode())
        return CachedLists(lists, "network", now, "; ".join(errors))
    stale = read_cache(cache_name, max_age=None)
    if stale is not None:
        return CachedLists(stale["lists"], "stale cache", stale["fetched"], "; ".join(errors))
    return CachedLists({}, "offline", None, "; ".join(errors))


@dataclass
class Resolution:
    """Outcome of :func:`resolve_remote_ids`: ``presets`` with ids filled where
    a name matched, and how the style lists were obtained (see :class:`CachedLists`)."""

    presets: list[StylePreset]
    source: str
    fetched: float | None
    error: str = ""

    @property
    def unresolved(self) -> list[str]:
        """Names of presets without a remote id."""
        return [p.name for p in self.presets if not p.resolved]


def resolve_remote_ids(fetch_json: FetchJson | None, presets: list[StylePreset] | None = None,
                       refresh: bool = False, max_age: float = CACHE_MAX_AGE) -> Resolution:
    """Find each preset's Higgsfield style id by name.

    Fetches the lists of :data:`STYLE_LIST_PATHS` through the 24 h cache
    (:func:`cached_lists`) and matches names with :func:`normalise_name`.
    Never raises for network trouble: offline, presets come back unresolved
    and :attr:`Resolution.error` says why.

    Args:
        fetch_json: ``fetch_json("/v1/text2image/soul-styles") -> list | dict``
            (the cloud client's authenticated GET), or None to stay offline.
        presets: presets to resolve (default :func:`load_presets` without ids).
        refresh: ignore a fresh cache and fetch again.
    """
    presets = load_presets(with_cached_ids=False) if presets is None else presets
    got = cached_lists(fetch_json, STYLE_LIST_PATHS, CACHE_FILE, refresh, max_age)
    return Resolution(apply_ids(presets, got.lists), got.source, got.fetched, got.error)
