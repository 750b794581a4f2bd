"""One browser pass over every template in a real ComfyUI, as a user meets it.

    COMFYUI_PATH=/path/to/ComfyUI python tests/browser_pass.py --out DIR \\
        [--front-end-root STATIC] [--vue-nodes] [--chromium /usr/bin/chromium] [--only NAME...]

Starts the cloud stand-in and ComfyUI (``--cpu``, 127.0.0.1; with
``--front-end-root`` another frontend, e.g. the newest
``comfyui-frontend-package``'s ``static`` folder), makes the Soul ID
``my_soul`` from real photos, then in headless Chromium (Playwright) for each
template in ``workflows/`` (whatever exists, in the browser's order):

1. fetches it from the template route the browser uses
   (``/api/workflow_templates/soulid/<name>.json``) and loads it into the
   editor; **loads** = every node type is registered in the frontend (no
   unknown / missing node), no dialog opened, no two nodes overlap (node
   boxes as the frontend laid them out, before and after the run);
2. queues it with the editor's own Run (``app.queuePrompt``) and waits;
   **runs** = ComfyUI's history says success; templates whose every output
   hangs off a model loader (:func:`stops_at_loaders`) must instead be refused
   at ComfyUI's validation ("value not in list": no weights here), and that is
   what is reported;
3. **result on node** = every node the run gave an output (``/history``
   outputs: images, clips, text) shows it on the canvas: a preview image or
   clip, and for text (our nodes' ``ui.text``) the ``result`` box of
   ``web/soulid.js`` holding that text; with ``--vue-nodes`` (the "Nodes 2.0"
   renderer) checked in the node's DOM;
4. **opens on its start** = at the view stored in the template (``extra.ds``,
   before any fit) no group title or node title on screen is cut off at the
   left or top or hidden under the frontend's bars and panels
   (:data:`VIEW_JS`); **stays in its groups** = no node sticks out of the
   group the template puts it in, once loaded and after the run (a preview
   that grew; :func:`spills`); both count under **loads**;
5. screenshots ``DIR/<name>_opened.png`` (as opened), ``DIR/<name>.png``
   (fitted, after the run), the main Soul ID node at 100 %
   (``DIR/<name>_node.png``) and the opening view with the run's results
   (``DIR/<name>_result.png``).

Finally it opens the template browser, picks the pack's category (1.27:
``soulid``; 1.58: EXTENSIONS -> ``Soul ID``), checks that every template is
listed there under its title (the file name, ``01 Create a Soul ID`` ...) in
reading order, Create first, and shoots ``DIR/template_browser.png``.

Writes ``DIR/report.json`` (frontend version, one row per template) and
``DIR/report.md`` (the table), prints one line per template and exits 1 when
a template does not load, run or show its result as expected, or a template
is missing from the browser.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from comfy_host import start_comfy  # noqa: E402
from render_templates import FACES, ORDER, depends_on_loaders, error_of, make_second_soul, prepare_inputs, queue  # noqa: E402
from standin.fixtures import cloud_env_vars, enable_cast_mode  # noqa: E402
from standin.server import StandIn  # noqa: E402
from workflow_check import ui_templates  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: Node boxes as LiteGraph lays them out (title bar included).
BOXES_JS = """() => {
  const g = window.app.graph;
  return (g.nodes || g._nodes).map(n => {
    const b = n.getBounding ? Array.from(n.getBounding()) : [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30];
    return {id: n.id, type: n.type, box: b};
  });
}"""

#: At the view the template opens with (its ``extra.ds``, before any fit): every
#: note (the template's instructions) lies wholly on screen, and every
#: group title and node title that lies on screen must be on the canvas and not
#: under the frontend's own bars and panels (``document.elementFromPoint`` hits
#: the canvas, or with Vue nodes that node's element; the zoom controls and
#: 1.58's minimap in the bottom-right corner excepted). Points further right or down are reached by
#: panning, as with any large graph.
VIEW_JS = """() => {
  const c = window.app.canvas, g = window.app.graph, el = c.canvas;
  const r = el.getBoundingClientRect();
  const at = (x, y) => [r.left + (x + c.ds.offset[0]) * c.ds.scale, r.top + (y + c.ds.offset[1]) * c.ds.scale];
  const pts = [];
  for (const gr of (g.groups || g._groups || [])) {
    const b = gr._bounding || gr.bounding;
    pts.push({what: `group "${gr.title}" title`, p: at(b[0] + 12, b[1] + 14), id: null});
  }
  for (const n of (g.nodes || g._nodes)) pts.push({what: `node ${n.id} ${n.type} title`, p: at(n.pos[0] + 12, n.pos[1] - 15), id: n.id});
  const bad = [];
  for (const n of (g.nodes || g._nodes)) {  // the template's instructions are read first: wholly on screen
    if (n.type !== 'MarkdownNote' && n.type !== 'Note') continue;
    const [x2, y2] = at(n.pos[0] + n.size[0], n.pos[1] + n.size[1]);
    if (x2 > Math.min(window.innerWidth, r.right) || y2 > Math.min(window.innerHeight, r.bottom))
      bad.push(`note ${n.id}: runs off the screen (to ${Math.round(x2)}, ${Math.round(y2)})`);
  }
  for (const {what, p: [x, y], id} of pts) {
    if (x >= Math.min(window.innerWidth, r.right) || y >= Math.min(window.innerHeight, r.bottom)) continue;
    if (x < Math.max(0, r.left) || y < Math.max(0, r.top)) { bad.push(`${what}: cut off (${Math.round(x)}, ${Math.round(y)})`); continue; }
    const hit = document.elementFromPoint(x, y);
    if (hit === el || (id !== null && hit?.closest?.(`[data-node-id="${id}"]`))) continue;
    if (!hit) continue;  // outside the window
    if (hit.closest?.('.minimap-main-container')) continue;  // 1.58's minimap (bottom right), the user's to hide
    const h = hit.getBoundingClientRect();  // the canvas's corner controls (zoom buttons) in the bottom right
    if (h.left > window.innerWidth * 0.6 && h.top > window.innerHeight * 0.6) continue;
    bad.push(`${what}: under ${hit.tagName.toLowerCase()}.${String(hit.className || '').slice(0, 50)}`);
  }
  return {scale: c.ds.scale, bad};
}"""

#: Each node with the groups it lies wholly inside (LiteGraph boxes, title bars included).
GROUPED_JS = """() => {
  const g = window.app.graph, gs = (g.groups || g._groups || []);
  return (g.nodes || g._nodes).map(n => {
    const b = n.getBounding ? Array.from(n.getBounding()) : [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30];
    const inside = gs.filter(gr => { const q = gr._bounding || gr.bounding;
      return b[0] >= q[0] - 1 && b[1] >= q[1] - 1 && b[0] + b[2] <= q[0] + q[2] + 1 && b[1] + b[3] <= q[1] + q[3] + 1; })
      .map(gr => gr.title);
    return {id: n.id, type: n.type, box: b.map(Math.round), inside};
  });
}"""


def groups_of(wf: dict) -> dict[int, set[str]]:
    """Node id -> titles of the groups the template places it in (its stored box, title bar included)."""
    out = {}
    for n in wf["nodes"]:
        x, y = n["pos"]
        w, h = n.get("size", [0, 0])
        out[n["id"]] = {g["title"] for g in wf.get("groups", [])
                        if g["bounding"][0] <= x and g["bounding"][1] <= y - 30
                        and x + w <= g["bounding"][0] + g["bounding"][2] and y + h <= g["bounding"][1] + g["bounding"][3]}
    return out


def spills(placed: dict[int, set[str]], now: list[dict]) -> list[str]:
    """Nodes that stick out of the group the template placed them in, as drawn now (a grown preview)."""
    return [f"{n['id']} {n['type']} {n['box']} out of {sorted(placed[n['id']] - set(n['inside']))}"
            for n in now if placed.get(n["id"]) and not placed[n["id"]] <= set(n["inside"])]


def close_notices(page) -> None:
    """Close 1.58's missing-model notice ("N issues found" / "<file> is missing",
    with View details and a close button): expected here, it floats over the canvas."""
    details = page.get_by_role("button", name="View details")
    for i in range(details.count()):
        try:
            box = details.nth(i).locator("xpath=ancestor::*[count(.//button)>=2][1]")
            box.locator("button").filter(has_not_text="View details").last.click(timeout=2000)
            time.sleep(0.3)
        except Exception as e:  # noqa: BLE001  (gone already)
            print("  (notice not closed:", type(e).__name__, ")")


#: Node types of the loaded graph that the frontend does not know (a missing node pack / node).
UNKNOWN_JS = """() => {
  const reg = window.LiteGraph?.registered_node_types || {};
  const g = window.app.graph;
  return (g.nodes || g._nodes).filter(n => !(n.type in reg))
    .map(n => n.type);
}"""

#: Open dialogs (PrimeVue and ARIA), with their text.
DIALOGS_JS = """() => Array.from(document.querySelectorAll('.p-dialog, [role=dialog], [role=alertdialog]'))
  .filter(d => d.offsetParent !== null || getComputedStyle(d).position === 'fixed')
  .filter(d => d.getBoundingClientRect().width > 0)
  .map(d => (d.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 2000))"""

#: What each node with a run output shows: preview images / clips and the result text box.
SHOWN_JS = """(ids) => {
  const g = window.app.graph;
  return ids.map(id => {
    const n = g.getNodeById(Number(id)) || g.getNodeById(id);
    if (!n) return {id, found: false};
    const w = (n.widgets || []).find(w => w.name === 'result');  // web/soulid.js's box
    const all = (n.widgets || []).map(w => { try { return String(w.value ?? ''); } catch (e) { return ''; } }).join('\\n');
    const el = document.querySelector(`[data-node-id="${id}"]`);
    const domText = el ? Array.from(el.querySelectorAll('textarea')).map(t => t.value).join('\\n') : '';
    const media = (n.imgs?.length || 0) + (n.widgets || []).filter(w => w.element?.querySelector?.('video,img')).length
      + (el ? el.querySelectorAll('img, video').length : 0) + (n.videoContainer ? 1 : 0);
    return {id, found: true, type: n.type, media, text: w ? String(w.value ?? '') : all, soulBox: !!w, domText, vueNode: !!el};
  });
}"""



def stops_at_loaders(prompt: dict, object_info: dict) -> bool:
    """True when every output node of the API ``prompt`` is, or hangs off, a model-file loader.

    Without weights ComfyUI then refuses the whole prompt at validation ("value
    not in list"; test_native_workflows.py checks the message); the pass still
    loads, queues and shoots such a template, and reports the refusal. A
    template with one output free of loaders runs that part and must succeed.
    """
    outs = [k for k, n in prompt.items() if object_info.get(n["class_type"], {}).get("output_node")]
    dep = depends_on_loaders(prompt)
    return bool(outs) and all(k in dep for k in outs)

#: The node the 100 % shot centres on: the first of these in the graph.
MAIN_NODES = ["SoulIDGenerate", "SoulIDEdit", "SoulIDIDPhotoSheet", "SoulIDDriftGuard", "SoulIDDoPAnimate",
              "SoulIDCreate"]
MEDIA_KEYS = ("images", "gifs", "video", "videos", "animated")


def overlaps(nodes: list[dict]) -> list[str]:
    out = []
    for i, a in enumerate(nodes):
        ax, ay, aw, ah = a["box"]
        for b in nodes[i + 1:]:
            bx, by, bw, bh = b["box"]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                out.append(f"{a['id']} {a['type']} / {b['id']} {b['type']}")
    return out


def model_dialogs(dialogs: list[str], wf: dict) -> tuple[list[str], list[str] | None]:
    """``(other dialogs, model files the Missing Models dialog lists)``.

    A template whose loaders carry ``properties.models`` opens the frontend's
    Missing Models dialog on a host without those files (1.27; 1.58 lists them
    in its side panel instead): that dialog is what the template is for, not a
    defect, when it names the template's own files. Any other dialog, or a
    Missing Models dialog that names none of them, stays a failure."""
    names = [m["name"] for n in wf.get("nodes", []) for m in (n.get("properties") or {}).get("models") or []
             if isinstance(m, dict) and m.get("name")]
    other, listed = [], None
    for d in dialogs:
        if d.lstrip().startswith("Missing Models") and names:
            hits = [x for x in names if x in d]
            if hits:
                listed = (listed or []) + hits
                continue
        other.append(d)
    return other, listed


def _text_of(out: dict) -> str:
    t = out.get("text")
    if not t:
        return ""
    return "\n".join(map(str, t)) if isinstance(t, list) else str(t)


def result_on_node(outputs: dict, shown: list[dict]) -> list[str]:
    """Problems: nodes whose run output (history ``outputs``) the canvas does not show."""
    by_id = {str(s["id"]): s for s in shown}
    bad = []
    for nid, out in outputs.items():
        s = by_id.get(str(nid))
        if not s or not s.get("found"):
            continue  # a node the API prompt adds (none in the UI graph)
        wants_media = any(out.get(k) for k in MEDIA_KEYS if k != "animated")
        text = _text_of(out)
        if wants_media and not s["media"]:
            bad.append(f"{nid} {s['type']}: no preview shown")
        if text:
            on = s["text"] or s["domText"]
            if text.splitlines()[0].strip() not in on:
                bad.append(f"{nid} {s['type']}: result text not shown")
    return bad


def _run(page, host) -> tuple[str, str, dict]:
    """Queue with the editor's Run; (status, error, outputs of the nodes that executed in this run).

    The editor's POST /prompt answer tells a refusal at validation (400) from
    a queued prompt (its ``prompt_id``), which is then awaited in ``/history``.
    Cached nodes are left out of the outputs: the server sends the browser
    nothing for them, so there is nothing new to show.
    """
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST",
                              timeout=120_000) as resp:
        page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
    r = resp.value
    if r.status != 200:
        try:
            body = r.json()
            err = (body.get("error") or {}).get("message", "") + " " + "; ".join(
                f"{e.get('message')}: {e.get('details')}" for ne in (body.get("node_errors") or {}).values()
                for e in ne.get("errors", []))[:300]
        except Exception:
            err = r.text()[:300]
        return "refused at validation", err.strip(), {}
    pid = r.json()["prompt_id"]
    t0 = time.monotonic()
    with host.client() as c:
        while time.monotonic() < t0 + 300:
            h = c.get(f"/history/{pid}").json()
            if pid in h and h[pid].get("status", {}).get("status_str") in ("success", "error"):
                e = h[pid]
                cached = {str(n) for kind, data in e["status"].get("messages", [])
                          if kind == "execution_cached" for n in data.get("nodes", [])}
                outs = {k: v for k, v in e.get("outputs", {}).items() if str(k) not in cached}
                return e["status"]["status_str"], error_of(e), outs
            time.sleep(0.3)
    return "timeout", "", {}


def _open_category(page, titles: list[str]) -> tuple[str, list[str]]:
    """Open the template browser on the pack's category; returns the dialog's
    text and the ``titles`` cut short on their cards (:data:`CUT_TITLES_JS`),
    read while scrolling through the (lazily rendered) card grid."""
    page.keyboard.press("Escape")
    page.evaluate("() => window.app.extensionManager?.command?.execute('Comfy.BrowseTemplates')")
    time.sleep(3)
    for label in ("Soul ID", "soulid"):  # 1.58: EXTENSIONS -> "Soul ID"; 1.27: the module name
        loc = page.locator(".p-dialog, [role=dialog]").get_by_text(label, exact=True)
        if loc.count():
            loc.first.click(timeout=5000)
            time.sleep(3)
            break
    texts, cut = [], set()
    for _ in range(6):  # the card grid may render lazily: read, scroll down, read again
        texts.append(page.evaluate("""() => Array.from(document.querySelectorAll('.p-dialog, [role=dialog]'))
          .map(d => d.innerText || '').join(' ')"""))
        cut.update(page.evaluate(CUT_TITLES_JS, titles))
        page.evaluate("""() => document.querySelectorAll('.p-dialog *, [role=dialog] *').forEach(e => {
          if (e.scrollHeight > e.clientHeight + 10) e.scrollTop += e.clientHeight; })""")
        time.sleep(0.7)
    page.evaluate("""() => document.querySelectorAll('.p-dialog *, [role=dialog] *').forEach(e => { e.scrollTop = 0; })""")
    time.sleep(0.5)
    return " ".join(texts), sorted(cut)


#: Card titles of the template browser cut short (an ellipsis or a line clamp): the
#: title's text, or the nearest box around it that clips, is wider or taller than that box.
CUT_TITLES_JS = """(titles) => titles.filter(t => {
  const els = Array.from(document.querySelectorAll('.p-dialog *, [role=dialog] *'))
    .filter(e => e.children.length === 0 && (e.textContent || '').trim() === t);
  return els.some(e => {
    for (let b = e, i = 0; b && i < 4; b = b.parentElement, i++) {
      const cs = getComputedStyle(b);
      const clips = cs.overflowX !== 'visible' || cs.overflowY !== 'visible' || cs.textOverflow === 'ellipsis'
        || (cs.webkitLineClamp && cs.webkitLineClamp !== 'none');
      if (!clips) continue;
      return b.scrollWidth > b.clientWidth + 1 || b.scrollHeight > b.clientHeight + 1;
    }
    return false;
  });
})"""


def _listed(title: str, text: str) -> bool:
    return title.lower() in re.sub(r"\s+", " ", text.lower())


def reading_order(titles: list[str], text: str) -> list[str]:
    """The ``titles`` found in the template browser's ``text``, in the order it shows them."""
    words = re.sub(r"\s+", " ", text.lower())
    found = [(words.find(t.lower()), t) for t in titles if t.lower() in words]
    return [t for _, t in sorted(found)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--front-end-root", help="a frontend's static folder (default: the host's own)")
    ap.add_argument("--vue-nodes", action="store_true", help='turn on the Vue node renderer ("Nodes 2.0")')
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    rows, bad = [], 0
    extra = ("--front-end-root", a.front_end_root) if a.front_end_root else ()
    with StandIn(queue_s=0.5, run_s=1.0) as standin, tempfile.TemporaryDirectory(prefix="soulid_browser_") as tmp:
        env = {**cloud_env_vars(standin.url), "SOULID_POLL_INITIAL": "0.1", "SOULID_POLL_MAX": "0.25"}
        enable_cast_mode(standin.url, FACES)  # Soul Cast: a prompt draws a fixture person
        with start_comfy(Path(tmp), extra_args=extra, env=env) as host:
            prepare_inputs(host)
            make_second_soul(host)  # my_soul_2, for the two-character templates
            names = [n for n in ORDER if not a.only or n in a.only]
            if "soul_id_create" not in names:
                # The Soul ID `my_soul` the other templates load. When the pass runs the create
                # template (first in ORDER) the browser makes it, as a user would: queued here
                # too, ComfyUI would answer the browser's identical prompt from its cache and
                # send the page nothing to show.
                create = json.loads((HERE.parent / "workflows" / "api" / "soul_id_create.json").read_text())
                for n in create.values():
                    if n["class_type"] == "SoulIDCreate":
                        n["inputs"]["name"] = "my_soul"
                entry = queue(host, create)
                assert entry["status"]["status_str"] == "success", error_of(entry)
            with host.client() as c:  # no first-run template dialog over the canvas
                c.post("/settings/Comfy.TutorialCompleted", json=True)
                c.post("/settings/Comfy.VueNodes.Enabled", json=bool(a.vue_nodes))
                object_info = c.get("/object_info").json()
            api = HERE.parent / "workflows" / "api"
            #: Templates whose every output depends on a model loader (computed, see stops_at_loaders).
            stops = {n for n in names if stops_at_loaders(json.loads((api / f"{n}.json").read_text()), object_info)}
            print(f"templates that stop at the model loaders here (no weights): {sorted(stops) or 'none'}", flush=True)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=a.chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1680, "height": 1000})
                page.on("pageerror", lambda e: print("  page error:", e))
                page.goto(host.url)
                page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
                time.sleep(2)
                version = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || ''")
                vue = bool(page.evaluate("() => window.app.extensionManager?.setting?.get?.('Comfy.VueNodes.Enabled')"))
                print(f"frontend {version}; Vue nodes (Nodes 2.0): {'on' if vue else 'off'}", flush=True)
                page.keyboard.press("Escape")
                titles, files = {}, ui_templates()
                for name in names:
                    titles[name] = files[name].stem  # what both frontends list and title the card with
                    wf = page.evaluate("async (stem) => (await fetch("
                                       "`/api/workflow_templates/soulid/${encodeURIComponent(stem)}.json`)).json()",
                                       titles[name])
                    page.keyboard.press("Escape")
                    page.evaluate("async ([wf, stem]) => { await window.app.loadGraphData(wf, true, true, stem); }",
                                  [wf, titles[name]])
                    time.sleep(1.5)
                    dialogs, model_files = model_dialogs(page.evaluate(DIALOGS_JS), wf)
                    page.keyboard.press("Escape")  # the Missing Models dialog, when expected
                    time.sleep(0.3)
                    close_notices(page)
                    view = page.evaluate(VIEW_JS)  # as the template opens, before any fit
                    page.screenshot(path=str(out / f"{name}_opened.png"), type="png")
                    page.evaluate("() => window.app.extensionManager?.command?.execute('Comfy.Canvas.FitView')")
                    time.sleep(0.5)
                    unknown = page.evaluate(UNKNOWN_JS)
                    ov = overlaps(page.evaluate(BOXES_JS))
                    placed = groups_of(wf)
                    spilt = spills(placed, page.evaluate(GROUPED_JS))
                    page.keyboard.press("Escape")
                    status, err, outputs = _run(page, host)
                    time.sleep(2.0)  # let the node previews and texts draw
                    page.screenshot(path=str(out / f"{name}.png"), type="png")
                    ov_after = overlaps(page.evaluate(BOXES_JS))
                    spilt += [f"after the run: {x}" for x in spills(placed, page.evaluate(GROUPED_JS))]
                    shown = page.evaluate(SHOWN_JS, list(outputs))
                    missing = result_on_node(outputs, shown)
                    # And at 100 % on the main Soul ID node, where its texts are readable.
                    page.evaluate("""(pick) => {
                      const c = window.app.canvas, g = window.app.graph;
                      const ns = (g.nodes || g._nodes);
                      const n = pick.map(t => ns.find(x => x.type === t)).find(Boolean) || ns[0];
                      c.ds.scale = 1.0;
                      c.ds.offset[0] = -n.pos[0] + 120; c.ds.offset[1] = -n.pos[1] + 120;
                      c.setDirty(true, true);
                    }""", MAIN_NODES)
                    time.sleep(1.0)
                    page.screenshot(path=str(out / f"{name}_node.png"))
                    # And at the view the template opens with, now with the run's results.
                    page.evaluate("""(ds) => { const c = window.app.canvas; c.ds.scale = ds.scale;
                      c.ds.offset[0] = ds.offset[0]; c.ds.offset[1] = ds.offset[1]; c.setDirty(true, true); }""",
                                  wf["extra"]["ds"])
                    time.sleep(1.0)
                    page.screenshot(path=str(out / f"{name}_result.png"))
                    expected = "refused at validation" if name in stops else "success"
                    loads = not unknown and not dialogs and not ov and not ov_after and not view["bad"] and not spilt
                    runs = status == expected
                    shows = runs and (status != "success" or (bool(outputs) and not missing))
                    kinds = sorted({k for o in outputs.values() for k in o if o.get(k)})
                    row = {"template": name, "loads": loads, "unknown_nodes": unknown, "dialogs": dialogs,
                           "missing_models_listed": model_files,
                           "overlaps": ov + ov_after, "opened_view": view, "out_of_group": spilt,
                           "status": status, "expected": expected, "error": err,
                           "runs": runs, "outputs": kinds, "result_on_node": shows, "not_shown": missing}
                    rows.append(row)
                    print(f"{name}: loads={loads} (unknown {unknown or 'none'}, dialogs {dialogs or 'none'}, "
                          f"overlaps {ov + ov_after or 'none'}, hidden at the opening view {view['bad'] or 'none'} "
                          f"(zoom {view['scale']:.2f}), out of its group {spilt or 'none'}); run: {status} {err}; expected {expected}; "
                          f"result on node: {shows} {missing or ''}", flush=True)
                    bad += not (loads and runs and shows)
                text, cut = _open_category(page, list(titles.values()))
                page.screenshot(path=str(out / "template_browser.png"))
                unlisted = [n for n in titles if not _listed(titles[n], text)]
                shown_order = reading_order(list(titles.values()), text)
                in_order = shown_order == sorted(titles.values()) and (
                    "soul_id_create" not in titles or shown_order[0] == titles["soul_id_create"])
                print(f"template browser: {len(titles) - len(unlisted)} of {len(titles)} Soul ID templates listed"
                      + (f"; missing: {unlisted}" if unlisted else "")
                      + f"; in reading order: {in_order} ({' | '.join(shown_order)})"
                      + f"; titles cut short on the card: {cut or 'none'}", flush=True)
                bad += bool(unlisted) + (not in_order) + bool(cut)
                browser.close()
    report = {"frontend": version, "vue_nodes": vue, "comfyui": _host_version(), "rows": rows,
              "template_browser": {"listed": [n for n in titles if n not in unlisted], "missing": unlisted,
                                   "shown_order": shown_order, "in_reading_order": in_order,
                                   "titles_cut_short": cut}}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    return 1 if bad else 0


def _host_version() -> str:
    import os

    f = Path(os.environ.get("COMFYUI_PATH", "")) / "comfyui_version.py"
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", f.read_text()) if f.is_file() else None
    return m.group(1) if m else "?"


def _yes(ok: bool, why: str = "") -> str:
    return "yes" if ok else f"**no**{': ' + why if why else ''}"


def markdown(report: dict) -> str:
    """The report as a Markdown table: template, loads, runs, result on node."""
    lines = [f"Frontend {report['frontend']} on ComfyUI {report['comfyui']}"
             f" (Vue node renderer \"Nodes 2.0\": {'on' if report['vue_nodes'] else 'off'}).", "",
             "| template | loads | runs | result on node |", "|---|---|---|---|"]
    for r in report["rows"]:
        why = "; ".join(filter(None, [", ".join(r["unknown_nodes"]) and f"unknown {', '.join(r['unknown_nodes'])}",
                                      "; ".join(r["dialogs"]), "; ".join(r["overlaps"]),
                                      "; ".join(r["opened_view"]["bad"]), "; ".join(r["out_of_group"])]))
        if r["status"] == "refused at validation" and r["runs"]:
            runs = "stops at the model loaders, as expected (no weights here: ComfyUI refuses at validation)"
        else:
            runs = _yes(r["runs"], f"{r['status']} {r['error']}".strip())
        if not r["runs"] or r["status"] != "success":
            shown = "-"
        else:
            shown = _yes(r["result_on_node"], "; ".join(r["not_shown"]))
            if r["result_on_node"]:
                shown += f" ({', '.join(k for k in r['outputs'] if k != 'animated')})"
        lines.append(f"| `{r['template']}` | {_yes(r['loads'], why)} | {runs} | {shown} |")
    tb = report["template_browser"]
    lines += ["", f"Template browser: {len(tb['listed'])} of {len(tb['listed']) + len(tb['missing'])} templates "
                  f"listed in the pack's category" + (f"; missing: {', '.join(tb['missing'])}" if tb["missing"] else ".")
              + f" In reading order: {_yes(tb['in_reading_order'])}" + (f" ({' | '.join(tb['shown_order'])})." if tb['shown_order'] else "")
              + f" Titles cut short on the card: {', '.join(tb['titles_cut_short']) or 'none'}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
