// Soul ID in the editor: results that are never stale, a Soul ID Load that
// knows the library, API keys from the settings, widgets that fit the mode,
// old workflows that still load, and the pack's search words.
//
// Works on the host's frontend (1.27) and the newest (1.58): it uses only the
// extension hooks both keep (registerExtension: settings, addCustomNodeDefs,
// beforeRegisterNodeDef, nodeCreated) and ComfyUI's `api` events
// (execution_start, execution_cached, executing, executed, execution_error,
// execution_interrupted, execution_success).
//
// API keys: each provider has a setting (Settings > Soul ID) drawn as a
// password field whose value goes to our server route POST /soulid/keys
// (stored in the 0600 credentials file) and is then cleared. The frontend's
// setter is never called, so the key is not in the settings file, the
// browser's storage, a workflow or image metadata.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { RESULT, showText } from "./soulid.js";

// Kept in step with soulid/nodes/compat.py.
const SEARCH_ALIASES = ["soul id", "face", "identity", "consistent character", "persona", "same face", "likeness"];
const RENAMED_INPUTS = {
  SoulIDDriftGuard: { soul: "soul_id" },
  SoulIDCharacterLog: { soul: "soul_id" },
  SoulIDMoodboard: { soul: "soul_id" },
  SoulIDIDPhotoSheet: { soul: "soul_id" },
};
// Nodes that pay a provider: a cancelled or failed run may leave a job there.
const PAID_HINT = "a job already submitted may still run at the provider; Run again resumes it (not paid twice)";
const PROVIDERS = [
  ["higgsfield", "Higgsfield API key (KEY_ID:KEY_SECRET)"],
  ["wavespeed", "WaveSpeed API key"],
  ["aurashot", "AuraShot API key"],
];
// Nodes that show a result text (kept in step with tests/workflow_check.py
// TEXT_NODES): their result box is there from the start, in the room the
// templates keep for it, so a run never takes height from the prompt box.
const TEXT_NODES = new Set(["SoulIDCreate", "SoulIDSave", "SoulIDScore", "SoulIDGenerate", "SoulIDEdit",
  "SoulIDTrainRemote", "SoulIDDoPAnimate", "SoulIDDriftGuard", "SoulIDIDPhotoSheet", "SoulIDCharacterLog",
  "SoulIDReferences", "SoulIDDriftGuardPickBest", "SoulIDApply", "SoulIDAttachLoRA", "SoulIDCharExport",
  "SoulIDFromImages", "SoulIDCast", "SoulIDCastGuard", "SoulIDHook"]);
// Nodes whose run can add or change a library entry.
const WRITES_LIBRARY = new Set(["SoulIDCreate", "SoulIDSave", "SoulIDCharacterLog", "SoulIDTrainRemote", "SoulIDCharImport"]);

// Soul ID Load shows its library entry, not a run's result.
const UNTRACKED = new Set(["SoulIDLoad"]);
const isOurs = (type) => typeof type === "string" && type.startsWith("SoulID");
const nodeById = (id) => app.graph?.getNodeById?.(Number(id)) ?? app.graph?.getNodeById?.(id);
const ourNodes = () => (app.graph?._nodes ?? app.graph?.nodes ?? [])
  .filter((n) => isOurs(n.comfyClass ?? n.type) && !UNTRACKED.has(n.comfyClass ?? n.type));
const RUNNING = "running…";
const widget = (node, name) => node.widgets?.find((w) => w.name === name);

function isPaid(node) {
  const backend = widget(node, "backend")?.value;
  if (backend === "local" || backend === "none") return false;
  return !!widget(node, "max_usd") || (node.comfyClass ?? node.type) === "SoulIDTrainRemote"
    || (widget(node, "train_remote")?.value ?? "none") !== "none";
}

// ---------------------------------------------------------------- results
// Per prompt: the Soul ID nodes whose shown result belongs to an earlier run.
const pending = new Map(); // node id -> text shown before this run
let running = null;

function setResult(node, text) {
  if (widget(node, RESULT) || text) showText(node, text, { compact: UNTRACKED.has(node.comfyClass ?? node.type) });
}

function onExecutionStart() {
  pending.clear();
  running = null;
  for (const n of ourNodes()) {
    const w = widget(n, RESULT);
    if (w && w.value) {
      pending.set(String(n.id), w.value);
      w.value = "(waiting: this run has not reached this node yet)";
      n.setDirtyCanvas?.(true, true);
    }
  }
}

function onCached(ids) {
  for (const id of ids ?? []) {
    const prev = pending.get(String(id));
    const n = nodeById(id);
    if (prev !== undefined && n) {
      widget(n, RESULT).value = prev; // unchanged inputs: the shown result still holds
      pending.delete(String(id));
    }
  }
}

function onExecuting(id) {
  if (id === null || id === undefined) { running = null; return; }
  running = String(id);
  const n = nodeById(id);
  if (!n || !isOurs(n.comfyClass ?? n.type) || UNTRACKED.has(n.comfyClass ?? n.type)) return;
  pending.delete(String(id));
  if (widget(n, RESULT)) setResult(n, RUNNING);
}

function onExecuted(id) {
  pending.delete(String(id));
  const n = nodeById(id);
  if (!n) return;
  if (WRITES_LIBRARY.has(n.comfyClass ?? n.type)) refreshLibrary();
  // A node that showed a result before but returned no text this time.
  setTimeout(() => { const w = widget(n, RESULT); if (w && w.value === RUNNING) setResult(n, "done"); }, 0);
}

function stopped(why, failedId, message) {
  for (const n of ourNodes()) {
    const id = String(n.id);
    if (id === String(failedId)) {
      const lines = [why === "error" ? `error: ${message || "the node failed"}` : "cancelled while running"];
      if (isPaid(n)) lines.push(PAID_HINT);
      lines.push("(no result from this run)");
      setResult(n, lines.join("\n"));
    } else if (pending.has(id)) {
      setResult(n, `not run: the run ${why === "error" ? "stopped at an error" : "was cancelled"} before this node`);
    }
  }
  pending.clear();
  running = null;
}

function listenForRuns() {
  api.addEventListener("execution_start", () => onExecutionStart());
  api.addEventListener("execution_cached", (e) => onCached(e.detail?.nodes));
  api.addEventListener("executing", (e) => onExecuting(typeof e.detail === "object" && e.detail !== null ? e.detail.node : e.detail));
  api.addEventListener("executed", (e) => onExecuted(e.detail?.node ?? e.detail?.display_node));
  api.addEventListener("execution_error", (e) => {
    const d = e.detail ?? {};
    stopped("error", d.node_id, `${d.exception_type ? d.exception_type.split(".").pop() + ": " : ""}${d.exception_message ?? ""}`.trim());
  });
  api.addEventListener("execution_interrupted", (e) => stopped("cancel", e.detail?.node_id ?? running));
  api.addEventListener("execution_success", () => { pending.clear(); refreshLibrary(); });
}

// ---------------------------------------------------------------- library
let library = { names: [], entries: [] };

async function fetchLibrary() {
  try {
    const r = await api.fetchApi("/soulid/library", { cache: "no-store" });
    if (r.ok) library = await r.json();
  } catch (e) {
    console.warn("soulid: cannot read the Soul ID library", e);
  }
  return library;
}

function describeEntry(e) {
  if (!e) return "";
  const thr = e.threshold != null ? `, threshold ${Number(e.threshold).toFixed(3)}` : "";
  return `${e.name}: verdict ${e.verdict}, ${e.accepted} of ${e.photos} photo${e.photos === 1 ? "" : "s"} kept${thr}`;
}

function showEntry(node) {
  const w = widget(node, "name");
  const e = library.entries.find((x) => x.name === w?.value);
  if (!library.names.length) {
    setResult(node, "the library is empty: run Soul ID Create first (this list refreshes by itself)");
    node.soulidThumb = undefined;
  } else if (!e) {
    setResult(node, `no Soul ID named ${JSON.stringify(w?.value ?? "")}: pick one of ${library.names.length}`);
    node.soulidThumb = undefined;
  } else {
    setResult(node, describeEntry(e));
    const img = new Image();
    img.onload = () => { node.soulidThumb = img; node.setDirtyCanvas?.(true, true); };
    img.src = api.apiURL(`/soulid/library/front?name=${encodeURIComponent(e.name)}&t=${e.modified}`);
  }
  node.setDirtyCanvas?.(true, true);
}

function updateLoadNode(node, pickNewest) {
  const w = widget(node, "name");
  if (!w) return;
  w.options = w.options || {};
  w.options.values = library.names.slice();
  if (library.names.length && !library.names.includes(w.value) && pickNewest) {
    w.value = library.names[0]; // newest first: a template's placeholder becomes the newest Soul ID
  }
  showEntry(node);
}

async function refreshLibrary(pickNewest = false) {
  await fetchLibrary();
  for (const n of ourNodes()) if ((n.comfyClass ?? n.type) === "SoulIDLoad") updateLoadNode(n, pickNewest);
}

// The front reference, drawn in the room left under the widgets (the node
// never grows for it, so it cannot cover the node below).
function drawThumb(node, ctx) {
  const img = node.soulidThumb;
  if (!img || node.flags?.collapsed) return;
  let top = 0;
  for (const w of node.widgets ?? []) {
    const y = w.last_y ?? w.y ?? 0;
    const h = w.computedHeight ?? (w.computeSize?.(node.size[0])?.[1]) ?? 20;
    top = Math.max(top, y + h);
  }
  top += 6;
  const room = [node.size[0] - 12, node.size[1] - top - 6];
  if (room[0] < 24 || room[1] < 24) return;
  const s = Math.min(room[0] / img.width, room[1] / img.height);
  const w = img.width * s, h = img.height * s;
  ctx.drawImage(img, (node.size[0] - w) / 2, top + (room[1] - h) / 2, w, h);
}

// ---------------------------------------------------------------- modes
function fitWidgetsToMode(node) {
  const type = node.comfyClass ?? node.type;
  const set = (name, on) => {
    const w = widget(node, name);
    if (!w) return;
    w.disabled = !on; // drawn greyed out, skipped by the pointer (both frontends)
    if (w.inputEl) w.inputEl.disabled = !on;
  };
  if (type === "SoulIDDoPAnimate") {
    const local = widget(node, "backend")?.value === "local";
    for (const name of ["model", "seed", "max_usd", "new_run", "prompt"]) set(name, !local);
    for (const name of ["seconds", "fps"]) set(name, local);
  } else if (type === "SoulIDDriftGuard") {
    const hasImages = !!node.inputs?.find((i) => i.name === "images")?.link;
    const hasVideo = !!node.inputs?.find((i) => i.name === "video")?.link;
    const best = widget(node, "mode")?.value === "best_of_n";
    const generates = best && !hasImages;
    for (const name of ["n", "backend", "aspect", "seed", "max_usd", "new_run", "stop_at_first_pass", "prompt"]) set(name, generates);
    set("max_frames", hasVideo && !hasImages);
  } else if (type === "SoulIDCreate") {
    set("model_version", widget(node, "train_remote")?.value !== "none");
  }
  node.setDirtyCanvas?.(true, true);
}

function watchModes(node) {
  for (const name of ["backend", "mode", "train_remote"]) {
    const w = widget(node, name);
    if (!w) continue;
    const cb = w.callback;
    w.callback = function () {
      const r = cb?.apply(this, arguments);
      fitWidgetsToMode(node);
      return r;
    };
  }
  const onConn = node.onConnectionsChange;
  node.onConnectionsChange = function () {
    const r = onConn?.apply(this, arguments);
    fitWidgetsToMode(node);
    return r;
  };
  fitWidgetsToMode(node);
}

// ---------------------------------------------------------------- keys
function keyField(provider, label) {
  return () => {
    const box = document.createElement("div");
    box.style.display = "flex";
    box.style.gap = "6px";
    box.style.alignItems = "center";
    const input = document.createElement("input");
    input.type = "password";
    input.autocomplete = "off";
    input.placeholder = "paste the key, then Save";
    input.setAttribute("data-soulid-key", provider);
    input.setAttribute("aria-label", label);
    const save = document.createElement("button");
    save.textContent = "Save";
    save.setAttribute("data-soulid-save", provider);
    const status = document.createElement("span");
    status.setAttribute("data-soulid-status", provider);
    status.style.opacity = "0.8";
    const show = (s) => {
      const k = s?.[provider];
      status.textContent = !k ? "" : k.source === "environment" ? "set (environment variable)"
        : k.set ? "set (stored on the server)" : "not set";
    };
    const post = async (key) => {
      const r = await api.fetchApi("/soulid/keys", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ provider, key }),
      });
      const body = await r.json();
      input.value = ""; // never kept in the page
      if (!r.ok) status.textContent = `refused: ${body.error}`;
      else show(body);
    };
    save.onclick = () => { if (input.value.trim()) post(input.value); };
    input.onkeydown = (e) => { if (e.key === "Enter" && input.value.trim()) post(input.value); };
    const clear = document.createElement("button");
    clear.textContent = "Remove";
    clear.onclick = () => post("");
    box.append(input, save, clear, status);
    api.fetchApi("/soulid/keys").then((r) => r.json()).then(show).catch(() => {});
    return box;
  };
}

const keySettings = PROVIDERS.map(([p, label]) => ({
  id: `SoulID.Keys.${p}`,
  name: label,
  category: ["Soul ID", "API keys", p],
  tooltip: "Stored on the ComfyUI server in the private (0600) soulid credentials file, never in a workflow, "
    + "image or the browser. Used from the next run on; no restart. An environment variable wins over it.",
  type: keyField(p, label),
  defaultValue: "",
}));

// An old workflow's renamed socket plus the one the frontend adds from the
// node definition: keep the linked one, drop the empty twin.
function dropEmptyTwins(node) {
  const inputs = node.inputs ?? [];
  for (let j = inputs.length - 1; j >= 0; j--) {
    const twin = inputs.findIndex((x, k) => k !== j && x.name === inputs[j].name);
    if (twin >= 0 && inputs[j].link == null && (inputs[twin].link != null || twin < j)) node.removeInput(j);
  }
}

// ---------------------------------------------------------------- templates
// ComfyUI lists a pack's templates in file-system order, and both frontends
// keep that order and title each card with its file name. Our file names are
// "NN Title" (GET /soulid/templates lists them): sorted, they read in order,
// Create a Soul ID first.
function orderTemplates() {
  if (api.getWorkflowTemplates?.soulidOrdered) return;
  const original = api.getWorkflowTemplates.bind(api);
  const ordered = async function () {
    const lists = await original();
    try {
      const ours = new Set((await (await api.fetchApi("/soulid/templates")).json()).map((e) => e.name));
      for (const names of Object.values(lists ?? {})) {
        if (Array.isArray(names) && names.some((n) => ours.has(n))) {
          names.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
        }
      }
    } catch (e) {
      console.warn("soulid: template order unavailable", e);
    }
    return lists;
  };
  ordered.soulidOrdered = true;
  api.getWorkflowTemplates = ordered;
}
orderTemplates();

// ---------------------------------------------------------------- extension
app.registerExtension({
  name: "soulid.UX",
  settings: keySettings,

  async setup() {
    listenForRuns();
    await refreshLibrary(true);
  },

  afterConfigureGraph() {
    for (const n of app.graph?._nodes ?? app.graph?.nodes ?? []) {
      if (RENAMED_INPUTS[n.comfyClass ?? n.type]) dropEmptyTwins(n);
    }
  },

  addCustomNodeDefs(defs) {
    for (const [name, def] of Object.entries(defs ?? {})) {
      if (!isOurs(name)) continue;
      def.search_aliases = [...new Set([...(def.search_aliases ?? []), ...SEARCH_ALIASES])];
    }
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isOurs(nodeData?.name)) return;
    if (nodeData.name === "SoulIDLoad") {
      const onDraw = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const r = onDraw?.apply(this, arguments);
        drawThumb(this, ctx);
        return r;
      };
    }
    const renames = RENAMED_INPUTS[nodeData.name];
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (info) {
      // An old workflow's socket names (`soul`) become the current ids (`soul_id`).
      if (renames) {
        for (const input of this.inputs ?? []) {
          const to = renames[input.name];
          if (!to) continue;
          input.name = to;
          if (input.label === undefined || input.label in renames) input.label = to;
          if ("localized_name" in input) input.localized_name = to;
        }
        dropEmptyTwins(this);
        setTimeout(() => dropEmptyTwins(this), 0);
      }
      const r = onConfigure?.apply(this, arguments);
      if (nodeData.name === "SoulIDLoad") setTimeout(() => refreshLibrary(true), 0);
      setTimeout(() => fitWidgetsToMode(this), 0);
      return r;
    };
  },

  nodeCreated(node) {
    const type = node.comfyClass ?? node.type;
    if (!isOurs(type)) return;
    if (TEXT_NODES.has(type) && !widget(node, RESULT)) {
      showText(node, "");
      const el = widget(node, RESULT)?.inputEl;
      if (el) el.placeholder = "the result of the last run shows here";
    }
    watchModes(node);
    if (type === "SoulIDLoad") {
      const w = widget(node, "name");
      if (w) {
        const cb = w.callback;
        w.callback = function () {
          const r = cb?.apply(this, arguments);
          showEntry(node);
          return r;
        };
      }
      fetchLibrary().then(() => updateLoadNode(node, true));
    }
  },
});
