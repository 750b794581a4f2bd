"""The pack's HTTP routes on ComfyUI's server, for ``web/soulid_ux.js``.

* ``GET /soulid/library``: the library, newest first: ``{"names": [...],
  "entries": [{"name", "modified", "verdict", "accepted", "photos",
  "threshold"}], "dir": str}``; Soul ID Load refreshes its list from it after
  a Create or Save, and shows an entry's verdict and photo count.
* ``GET /soulid/library/front?name=NAME``: the front reference photo of a
  Soul ID (JPEG as stored in the ``.soulid``), for Soul ID Load's preview.
* ``GET /soulid/templates``: the pack's templates in reading order with
  their titles; the editor puts the template browser's list in that order.
* ``GET /soulid/keys``: which providers have an API key and where it comes
  from (``{"higgsfield": {"set": true, "source": "file"}, ...}``); never a key.
* ``POST /soulid/keys`` ``{"provider": "wavespeed", "key": "..."}``: stores
  the key in the 0600 credentials file
  (:func:`soulid.backends.credentials.save_key`); the next run reads it, no
  restart needed. An empty ``key`` removes the stored one. The answer never
  echoes the key.

Routes are added to ``PromptServer.instance.routes`` while ComfyUI loads the
pack (before it builds its route table). https://docs.comfy.org/development/comfyui-server/comms_routes
"""
from __future__ import annotations

import logging

log = logging.getLogger("soulid")

#: Longest key accepted from the browser, characters.
MAX_KEY_CHARS = 512


def library_entries() -> dict:
    """The library as ``GET /soulid/library`` returns it (newest first).

    An entry that cannot be read is listed with ``"verdict": "unreadable"``."""
    from ..soul.errors import SoulIDError
    from ..soul.library import Library

    lib = Library()
    entries = []
    for name in lib.list():
        e = {"name": name, "modified": 0.0, "verdict": "unreadable", "accepted": 0, "photos": 0, "threshold": None}
        try:
            e["modified"] = lib.path(name).stat().st_mtime
            soul = lib.load(name)
            summary = (soul.qa_report or {}).get("summary") or {}
            e.update(verdict=summary.get("verdict", "unknown"), accepted=len(soul.photos),
                     photos=int(summary.get("photos") or len(soul.photos)))
            ident = next(iter(soul.analyzers.values()), None)
            e["threshold"] = None if ident is None else round(float(ident.threshold), 3)
        except (OSError, SoulIDError, ValueError) as ex:
            log.warning("soulid: library entry %r: %s", name, ex)
        entries.append(e)
    entries.sort(key=lambda e: -e["modified"])
    return {"names": [e["name"] for e in entries], "entries": entries, "dir": str(lib.dir)}


def front_jpeg(name: str) -> bytes:
    """The stored JPEG of ``name``'s front reference (the first photo whose
    role is ``front``, else the first photo).

    Raises:
        LibraryError: no such Soul ID (or an invalid name).
        SoulIDError: it holds no photo.
    """
    from ..soul.errors import SoulIDError
    from ..soul.library import Library
    from ..soul.references import photo_roles

    soul = Library().load(name)
    if not soul.photos:
        raise SoulIDError(f"Soul ID {name!r} holds no photo")
    roles = photo_roles(soul)
    i = roles.index("front") if "front" in roles else 0
    return soul.photos[i].jpeg


def template_order() -> list[dict]:
    """The pack's templates in reading order: ``[{"name", "title"}]``.

    ``name`` is the file stem both frontends list and title the card with
    (``NN Title``: the two-digit prefix is the reading order, Create is 01).
    """
    import json
    from pathlib import Path

    out = []
    for f in sorted((Path(__file__).resolve().parent.parent / "workflows").glob("*.json")):
        try:
            meta = (json.loads(f.read_text(encoding="utf-8")).get("extra") or {}).get("soulid") or {}
        except (OSError, ValueError):
            meta = {}
        out.append({"name": f.stem, "title": str(meta.get("title") or f.stem)})
    return out


def key_status() -> dict:
    """``{provider: {"set": bool, "source": "environment" | "file" | "none"}}``."""
    from ..backends import credentials

    out = {}
    for p in credentials.PROVIDERS:
        src = credentials.key_source(p)
        kind = "environment" if src.startswith("the environment") else ("none" if src == "nowhere" else "file")
        out[p] = {"set": kind != "none", "source": kind}
    return out


def store_key(provider: str, key: str) -> None:
    """Store (or, with an empty ``key``, remove) ``provider``'s key in the credentials file.

    Raises:
        ValueError: unknown provider, a key too long or malformed.
    """
    from ..backends import credentials

    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"an API key longer than {MAX_KEY_CHARS} characters")
    if key.strip():
        credentials.save_key(provider, key)
    else:
        credentials.forget_key(provider)


def register() -> bool:
    """Add the routes and the old-workflow prompt handler to ComfyUI's server.
    Returns False when there is no server (e.g. the pack imported by a script)."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return False
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return False
    from ..soul.errors import SoulIDError
    from .compat import on_prompt

    server.add_on_prompt_handler(on_prompt)
    routes = server.routes

    @routes.get("/soulid/library")
    async def get_library(request):
        try:
            return web.json_response(library_entries())
        except (OSError, SoulIDError) as e:
            return web.json_response({"names": [], "entries": [], "error": str(e)})

    @routes.get("/soulid/library/front")
    async def get_front(request):
        try:
            data = front_jpeg(request.rel_url.query.get("name", ""))
        except (OSError, SoulIDError) as e:
            return web.json_response({"error": str(e)}, status=404)
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @routes.get("/soulid/templates")
    async def get_templates(request):
        return web.json_response(template_order())

    @routes.get("/soulid/keys")
    async def get_keys(request):
        return web.json_response(key_status())

    @routes.post("/soulid/keys")
    async def post_key(request):
        try:
            body = await request.json()
            store_key(str(body.get("provider", "")), str(body.get("key", "")))
        except (ValueError, AttributeError, SoulIDError) as e:
            from ..backends.credentials import redact

            return web.json_response({"error": redact(str(e))}, status=400)
        return web.json_response(key_status())

    return True
