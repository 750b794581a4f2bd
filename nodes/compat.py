"""Old workflows keep loading; searches for the pack's words find its nodes.

* :data:`RENAMED_INPUTS`: input ids renamed so that every node takes its Soul
  ID as ``soul_id``. :func:`migrate_prompt` rewrites an API-format prompt
  (``{node_id: {"class_type", "inputs"}}``) that still uses an old id; it is
  registered with ComfyUI's ``PromptServer.add_on_prompt_handler`` (which runs
  on every ``POST /prompt`` before validation), so an old API workflow, or an
  old UI workflow queued from a frontend that kept the old socket name,
  runs unchanged. ``web/soulid_ux.js`` renames the socket of an old UI
  workflow when the graph is loaded (``onConfigure``), so the editor shows the
  new name too.
* :data:`SEARCH_ALIASES`: the words a user types for this pack. Hosts whose
  ``io.Schema`` has ``search_aliases`` get them from :func:`search_aliases`;
  for older hosts ``web/soulid_ux.js`` adds the same list to every Soul ID
  node definition the frontend reads (frontend 1.58 searches ``search_aliases``).

Node ids never changed, so no node replacement is needed: only the display
names moved to one scheme, "Soul ID ...".
"""
from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger("soulid")

#: ``{node_id: {old input id: new input id}}``.
RENAMED_INPUTS: dict[str, dict[str, str]] = {
    "SoulIDDriftGuard": {"soul": "soul_id"},
    "SoulIDCharacterLog": {"soul": "soul_id"},
    "SoulIDMoodboard": {"soul": "soul_id"},
    "SoulIDIDPhotoSheet": {"soul": "soul_id"},
}

#: What people search for when they want this pack (kept in step with web/soulid_ux.js).
SEARCH_ALIASES = ["soul id", "face", "identity", "consistent character", "persona", "same face", "likeness"]


def search_aliases() -> dict:
    """``{"search_aliases": [...]}`` where this host's ``io.Schema`` has the
    field, else ``{}`` (ComfyUI 0.3.64 has none: the frontend extension adds them)."""
    from comfy_api.latest import io

    fields = {f.name for f in dataclasses.fields(io.Schema)} if dataclasses.is_dataclass(io.Schema) else set()
    return {"search_aliases": list(SEARCH_ALIASES)} if "search_aliases" in fields else {}


def migrate_prompt(prompt: dict) -> int:
    """Rename old input ids in an API-format ``prompt`` in place (and give
    DoP Animate's motion lists ``none`` where an old workflow left them empty).

    Args:
        prompt: ``{node_id: {"class_type": str, "inputs": dict}}``; anything
            else is left alone (ComfyUI's validation reports it).

    Returns:
        How many inputs were renamed. An input is never renamed over a new id
        that is already set.
    """
    n = 0
    if not isinstance(prompt, dict):
        return 0
    for node in prompt.values():
        if not isinstance(node, dict):
            continue
        renames = RENAMED_INPUTS.get(node.get("class_type"))
        inputs = node.get("inputs")
        if not renames or not isinstance(inputs, dict):
            continue
        for old, new in renames.items():
            if old in inputs and new not in inputs:
                inputs[new] = inputs.pop(old)
                n += 1
    for node in prompt.values():  # motions were free text: "" is now the list's "none"
        if isinstance(node, dict) and node.get("class_type") == "SoulIDDoPAnimate" and isinstance(node.get("inputs"), dict):
            for k in ("motion_1", "motion_2"):
                if node["inputs"].get(k) == "":
                    node["inputs"][k] = "none"
                    n += 1
    return n


def on_prompt(json_data: dict) -> dict:
    """``PromptServer`` on-prompt handler: :func:`migrate_prompt` on ``json_data["prompt"]``."""
    try:
        if migrate_prompt(json_data.get("prompt")):
            log.info("soulid: renamed old input ids (soul -> soul_id) in a queued workflow")
    except Exception:  # a handler must never block a prompt
        log.exception("soulid: could not migrate a queued workflow")
    return json_data
