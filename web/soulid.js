// Soul ID: show a node's result text on the node itself.
//
// Our nodes return their figures as `ui.text` (comfy_api.latest ui.PreviewText):
// the cost estimate and budget of a paid node, the QA report of Create, the
// scores of Score, the Drift Guard report, where Save wrote. ComfyUI's
// frontend draws images from `ui.images` by itself but has no generic place
// for text, so this adds one read-only text box ("result") under the widgets
// of a Soul ID node the first time it shows something. The box is not saved
// in the workflow and is not an input.
//
// The box is a DOM widget made through the frontend's public node API
// (node.addDOMWidget), not through the internal scripts/widgets.js, which
// frontend 1.58 warns about on every page load.
import { app } from "../../scripts/app.js";

export const RESULT = "result";
//: The result box takes at most RESULT_MAX px (the room the templates keep
//: for it), so it never takes height from the other widgets: a prompt box
//: keeps its size. A node too small for it grows just enough.
const RESULT_MIN = 40;
const RESULT_MAX = 100;

export function showText(node, text, { compact = false } = {}) {
  let w = node.widgets?.find((x) => x.name === RESULT);
  if (!w) {
    const before = node.size ? [node.size[0], node.size[1]] : null;
    const max = compact ? RESULT_MIN : RESULT_MAX;
    const el = document.createElement("textarea");
    el.className = "comfy-multiline-input";
    el.readOnly = true;
    el.spellcheck = false;
    el.style.opacity = 0.85;
    w = node.addDOMWidget(RESULT, "customtext", el, {
      serialize: false,
      getValue: () => el.value,
      setValue: (v) => { el.value = v ?? ""; },
      getMinHeight: () => RESULT_MIN, getMaxHeight: () => max, getHeight: () => max,
    });
    w.serialize = false;
    w.inputEl = el;
    const need = node.computeSize?.();
    if (before && need && node.setSize) node.setSize([Math.max(before[0], need[0]), Math.max(before[1], need[1])]);
  }
  w.value = text;
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "soulid.ResultText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("SoulID")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (text && text.length) showText(this, Array.isArray(text) ? text.join("\n") : String(text));
    };
  },
});
