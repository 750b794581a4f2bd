// Soul ID: show a node's result text on the node itself.
//
// Our nodes return their figures as `ui.text` (comfy_api.latest ui.PreviewText):
// the cost estimate and budget of a paid node, the QA report of Create, the
// scores of Score, the Drift Guard report, where Save wrote. ComfyUI's
// frontend draws images from `ui.images` by itself but has no generic place
// for text, so this adds one read-only text box ("result") under the widgets
// of a Soul ID node the first time it shows something. The box is not saved
// in the workflow and is not an input.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

export const RESULT = "result";
//: Height the result box takes, px: the node grows by this much when the box
//: is added, so the box never takes room from the other widgets (a prompt
//: box keeps its size).
const RESULT_MIN = 48;
const RESULT_MAX = 120;

export function showText(node, text) {
  let w = node.widgets?.find((x) => x.name === RESULT);
  if (!w) {
    const before = node.size ? [node.size[0], node.size[1]] : null;
    w = ComfyWidgets.STRING(node, RESULT, ["STRING", { multiline: true }], app).widget;
    w.serialize = false;
    w.options = { ...(w.options || {}), serialize: false,
                  getMinHeight: () => RESULT_MIN, getMaxHeight: () => RESULT_MAX, getHeight: () => RESULT_MAX };
    if (w.inputEl) {
      w.inputEl.readOnly = true;
      w.inputEl.style.opacity = 0.85;
    }
    if (before && node.setSize) node.setSize([before[0], before[1] + RESULT_MAX + 8]);
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
