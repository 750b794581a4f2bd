"""The editor checks of web/soulid_ux.js in a real ComfyUI + headless Chromium.

    COMFYUI_PATH=/path/to/ComfyUI python tests/browser_ux.py --out DIR [--front-end-root STATIC]

Starts the cloud stand-in (no keys in the environment) and ComfyUI, makes the
Soul ID ``my_soul``, then in the browser:

1. an OLD UI workflow (Moodboard's Soul ID socket still named ``soul``) loads
   with the socket renamed ``soul_id`` and runs;
2. Soul ID Load lists the library newest first, shows verdict and photo count
   and the front reference; a Soul ID created by the editor's own Run while
   the page is open appears in its list without a reload;
3. the API key is typed into Settings > Soul ID and saved through our route:
   the cloud Generate then runs; the key is in neither the page's storage,
   the settings file, nor the saved workflow;
6. DoP Animate greys out what its backend ignores; motions are a list;
5. the template browser shows the pack's templates in reading order, Create first;
4. results are never stale: a run that fails shows its own error line with
   "may still run at the provider; Run again resumes it", a cancelled run shows
   "cancelled", and the prompt box keeps its height after the result box appears.

Writes screenshots to DIR and prints one line per check; exits 1 on a failure.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from browser_pass import ARGS, BOXES_JS, overlaps  # noqa: E402
from comfy_host import start_comfy  # noqa: E402
from render_templates import error_of, prepare_inputs, queue  # noqa: E402
from standin.fixtures import cloud_env_vars  # noqa: E402
from standin.server import AURASHOT_KEY, StandIn  # noqa: E402
from workflow_check import ui_template  # noqa: E402

REPO = HERE.parent
KEY_VARS = ("HF_KEY", "HF_API_KEY", "HF_API_SECRET", "WAVESPEED_API_KEY", "AURASHOT_API_KEY")

NODE_JS = """(type) => { const g = window.app.graph; const ns = (g.nodes || g._nodes);
  const n = ns.find(x => x.type === type); if (!n) return null;
  const w = (name) => (n.widgets || []).find(x => x.name === name);
  const el = (name) => w(name)?.inputEl || w(name)?.element;
  return {id: n.id, inputs: (n.inputs || []).map(i => i.name), result: w('result')?.value ?? null,
          name: w('name')?.value ?? null, values: w('name')?.options?.values ?? null,
          promptH: el('prompt') ? el('prompt').getBoundingClientRect().height / (window.app.canvas.ds.scale || 1) : null,
          imgs: (n.imgs || []).length + (n.soulidThumb ? 1 : 0), size: Array.from(n.size)}; }"""


def wait_idle(host, before: int, t: float = 120) -> dict:
    end = time.monotonic() + t
    with host.client() as c:
        while time.monotonic() < end:
            hist = c.get("/history").json()
            q = c.get("/queue").json()
            if len(hist) > before and not q["queue_running"] and not q["queue_pending"]:
                return list(hist.values())[-1]
            time.sleep(0.3)
    return {"status": {"status_str": "timeout", "messages": []}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--front-end-root", default=None)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    fails: list[str] = []

    def check(what: str, ok: bool, detail="") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what} {detail}", flush=True)
        if not ok:
            fails.append(what)

    extra = ("--front-end-root", a.front_end_root) if a.front_end_root else ()
    with StandIn(queue_s=1.5, run_s=3.0) as standin, tempfile.TemporaryDirectory(prefix="soulid_ux_") as tmp:
        env = {k: v for k, v in cloud_env_vars(standin.url).items() if k not in KEY_VARS}
        env.update(SOULID_POLL_INITIAL="0.1", SOULID_POLL_MAX="0.25")
        with start_comfy(Path(tmp), extra_args=extra, env=env) as host:
            prepare_inputs(host)
            create = json.loads((REPO / "workflows" / "api" / "soul_id_create.json").read_text())
            for n in create.values():
                if n["class_type"] == "SoulIDCreate":
                    n["inputs"].update(name="my_soul", analyzer="dlib")
            entry = queue(host, create)
            assert entry["status"]["status_str"] == "success", error_of(entry)
            with host.client() as c:
                c.post("/settings/Comfy.TutorialCompleted", json=True)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=a.chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                errors, notices = [], []
                page.on("pageerror", lambda e: errors.append(f"{e} {getattr(e, 'stack', '')}"[:600]))
                # 1.58's shims of internal modules warn when an extension imports them; the only
                # extension here is ours.
                page.on("console", lambda m: notices.append(m.text) if "[ComfyUI Notice]" in m.text else None)
                page.goto(host.url)
                page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
                time.sleep(3)

                loads = iter(range(1, 1000))

                def load(wf):
                    # Each graph under its own name, as a template opens: in a tab of its own. (1.58
                    # reuses a tab of the same name and keeps the previous graph's previews by node id.)
                    page.keyboard.press("Escape")
                    page.evaluate("async ([wf, name]) => { await window.app.loadGraphData(wf, true, true, name); }",
                                  [wf, f"ux {next(loads)}"])
                    time.sleep(1.5)

                def run_and_wait():
                    before = len(host.client().get("/history").json())
                    page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
                    last = wait_idle(host, before)
                    time.sleep(1.5)
                    return last

                # 1. an old workflow
                old = json.loads(ui_template("moodboard").read_text())
                for n in old["nodes"]:
                    for i in n.get("inputs", []):
                        if n["type"] == "SoulIDMoodboard" and i["name"] == "soul_id":
                            i["name"] = "soul"
                load(old)
                mb = page.evaluate(NODE_JS, "SoulIDMoodboard")
                check("old workflow: socket renamed soul -> soul_id", mb["inputs"].count("soul_id") == 1 and "soul" not in mb["inputs"],
                      mb["inputs"])
                api = page.evaluate("async () => (await window.app.graphToPrompt()).output")
                mb_api = [v for v in api.values() if v["class_type"] == "SoulIDMoodboard"][0]
                check("old workflow: queued with soul_id", "soul_id" in mb_api["inputs"], sorted(mb_api["inputs"]))

                # 2. Soul ID Load knows the library; a new Soul ID appears without a reload
                gen = json.loads(ui_template("soul_generate_cloud").read_text())
                for n in gen["nodes"]:
                    if n["type"] == "SoulIDLoad":
                        n["widgets_values"] = ["someone_else"]
                load(gen)
                time.sleep(1.5)
                ld = page.evaluate(NODE_JS, "SoulIDLoad")
                check("Load: placeholder becomes the newest Soul ID", ld["name"] == "my_soul", ld)
                check("Load: verdict and photo count shown", bool(ld["result"]) and "verdict" in ld["result"]
                      and "photo" in ld["result"], ld["result"])
                check("Load: front reference shown", ld["imgs"] == 1, ld["imgs"])
                page.screenshot(path=str(out / "load_node.png"))
                ov = overlaps(page.evaluate(BOXES_JS))
                check("Load's preview and text fit its box (no overlap)", not ov, ov)
                crt = json.loads(ui_template("soul_id_create").read_text())
                for n in crt["nodes"]:
                    if n["type"] == "SoulIDCreate":
                        n["widgets_values"][0] = "made_in_editor"
                        n["widgets_values"][2] = "dlib"
                load(crt)
                last = run_and_wait()
                check("Create from the editor ran", last["status"]["status_str"] == "success", error_of(last))
                load(gen)
                time.sleep(1.5)
                ld = page.evaluate(NODE_JS, "SoulIDLoad")
                check("Load: lists the new Soul ID without a reload", (ld["values"] or [None])[0] == "made_in_editor",
                      ld["values"])

                # 3. key from the settings
                page.evaluate("() => window.app.extensionManager?.command?.execute('Comfy.ShowSettingsDialog')")
                time.sleep(2)
                try:
                    page.get_by_text("Soul ID", exact=True).first.click(timeout=5000)
                    time.sleep(1)
                except Exception as e:
                    print("  settings: no 'Soul ID' category to click:", type(e).__name__)
                field = page.locator("input[data-soulid-key=aurashot]")
                ok = field.count() == 1
                check("Settings: a password field per provider", ok and field.get_attribute("type") == "password")
                if ok:
                    field.fill(AURASHOT_KEY)
                    page.locator("button[data-soulid-save=aurashot]").click()
                    time.sleep(1.5)
                    page.screenshot(path=str(out / "settings_keys.png"))
                    check("Settings: field cleared after Save", field.input_value() == "")
                page.keyboard.press("Escape")
                time.sleep(0.5)
                status = host.client().get("/soulid/keys").json()
                check("Settings: key stored on the server", status["aurashot"] == {"set": True, "source": "file"}, status)

                # 4. results: run, then error, then cancel
                for n in gen["nodes"]:
                    if n["type"] == "SoulIDGenerate":
                        n["widgets_values"][0] = "aurashot"
                        n["widgets_values"][-2] = 0.0  # max_usd: no limit (the stand-in gives no estimate)
                    if n["type"] == "SoulIDLoad":
                        n["widgets_values"] = ["my_soul"]
                gen["nodes"] = [n for n in gen["nodes"] if n["type"] != "SoulIDTrainRemote"]
                load(gen)
                page.evaluate("""() => { const g = window.app.graph; const ns = (g.nodes || g._nodes);
                  const l = ns.find(x => x.type === 'SoulIDLoad'), t = ns.find(x => x.type === 'SoulIDGenerate');
                  l.connect(0, t, t.inputs.findIndex(i => i.name === 'soul_id')); }""")
                h0 = page.evaluate(NODE_JS, "SoulIDGenerate")["promptH"]
                last = run_and_wait()
                g1 = page.evaluate(NODE_JS, "SoulIDGenerate")
                check("Generate ran with the key from the settings", last["status"]["status_str"] == "success",
                      error_of(last))
                check("result shown", bool(g1["result"]) and "aurashot" in g1["result"], g1["result"])
                check("prompt box keeps its height", h0 and g1["promptH"] and g1["promptH"] >= h0 - 2,
                      f"{h0} -> {g1['promptH']}")
                page.screenshot(path=str(out / "generate_result.png"))
                ov = overlaps(page.evaluate(BOXES_JS))
                check("result boxes fit the nodes (no overlap after the run)", not ov, ov)
                page.evaluate("""() => { const g = window.app.graph; const ns = (g.nodes || g._nodes);
                  const t = ns.find(x => x.type === 'SoulIDGenerate');
                  t.widgets.find(w => w.name === 'max_usd').value = 0.5;
                  t.widgets.find(w => w.name === 'seed').value = 99; }""")  # a new request, no estimate: refused
                last = run_and_wait()
                g2 = page.evaluate(NODE_JS, "SoulIDGenerate")
                check("error: own line, no old result", last["status"]["status_str"] == "error" and
                      g2["result"].startswith("error:") and "request" not in g2["result"].split("\n")[0][:8], g2["result"])
                check("error: provider hint", "may still run at the provider; Run again resumes it" in g2["result"])
                page.screenshot(path=str(out / "generate_error.png"))
                page.evaluate("""() => { const g = window.app.graph; const ns = (g.nodes || g._nodes);
                  const t = ns.find(x => x.type === 'SoulIDGenerate');
                  t.widgets.find(w => w.name === 'max_usd').value = 0.0;
                  t.widgets.find(w => w.name === 'seed').value = 4242; }""")
                before = len(host.client().get("/history").json())
                page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
                time.sleep(1.5)
                host.client().post("/interrupt")
                wait_idle(host, before)
                time.sleep(1.5)
                g3 = page.evaluate(NODE_JS, "SoulIDGenerate")
                check("cancel: own line, no old result", "cancelled" in (g3["result"] or "") and
                      "may still run at the provider" in g3["result"], g3["result"])
                page.screenshot(path=str(out / "generate_cancel.png"))

                # 6. widgets that fit the mode; motions as a list
                load(json.loads(ui_template("soul_animate_local").read_text()))
                modes = page.evaluate("""() => { const g = window.app.graph; const ns = (g.nodes || g._nodes);
                  const n = ns.find(x => x.type === 'SoulIDDoPAnimate'); const w = (k) => n.widgets.find(x => x.name === k);
                  const local = {model: !!w('model').disabled, seed: !!w('seed').disabled, fps: !!w('fps').disabled};
                  w('backend').value = 'higgsfield'; w('backend').callback?.('higgsfield');
                  const cloud = {model: !!w('model').disabled, fps: !!w('fps').disabled};
                  return {local, cloud, motion: w('motion_1').type, values: (w('motion_1').options.values || []).length}; }""")
                check("DoP Animate on local: model and seed disabled, fps enabled",
                      modes["local"] == {"model": True, "seed": True, "fps": False}, modes)
                check("DoP Animate on a cloud backend: model enabled, fps disabled",
                      modes["cloud"] == {"model": False, "fps": True}, modes)
                check("motions are a list", modes["motion"] == "combo" and modes["values"] > 12, modes)

                # 5. the template browser lists ours in reading order, Create first
                page.keyboard.press("Escape")
                order = [e["name"] for e in host.client().get("/soulid/templates").json()]
                page.evaluate("() => window.app.extensionManager?.command?.execute('Comfy.BrowseTemplates')")
                time.sleep(3)
                for label in ("Soul ID", "soulid"):
                    try:
                        page.get_by_text(label, exact=True).first.click(timeout=3000)
                        break
                    except Exception:
                        continue
                time.sleep(3)
                page.screenshot(path=str(out / "template_browser.png"))
                seen = []
                for name in order:
                    loc = page.get_by_text(name, exact=True)
                    box = loc.first.bounding_box() if loc.count() else None
                    if box:
                        seen.append((round(box["y"] / 40), box["x"], name))
                shown = [n for _, _, n in sorted(seen)]
                check("template browser: reading order, Create first",
                      len(shown) >= 4 and shown[0] == "01 Create a Soul ID" and shown == [n for n in order if n in shown],
                      shown)
                page.keyboard.press("Escape")

                # nothing of the key client side or in the workflow
                storage = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
                wf = page.evaluate("() => JSON.stringify(window.app.graph.serialize())")
                settings = host.client().get("/settings").text
                for where, text in (("browser storage", storage), ("workflow", wf), ("settings", settings)):
                    check(f"no key in the {where}", AURASHOT_KEY not in text)
                check("no internal-module notice (the pack imports only the public app and api)", not notices,
                      notices[:3])
                ours = [e for e in errors if "/extensions/soulid/" in e]
                check("no page errors from the pack's scripts", not ours, ours[:3])
                if errors:
                    print("  (frontend's own page errors:", len(errors), errors[0][:160].replace("\n", " "), ")")
                browser.close()
    print("FAILED: " + ", ".join(fails) if fails else "all editor checks passed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
