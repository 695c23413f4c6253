// The page's lists drawn from the state: preset and registered styles (toggle tiles), the chosen
// styles with their weights, the history.
import * as history from "./history.js";
import { later } from "./photo.js";
import { state, view } from "./store.js";
import { deleteMine, remove, setWeight, toggle } from "./styles.js";
import { $, list, set, shown } from "./view.js";

// A toggle button showing a picture and a caption (the style galleries, the history).
function pictureButton(src, caption, pressed, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.setAttribute("aria-pressed", String(pressed));
  const img = Object.assign(document.createElement("img"), { src, alt: "" });
  const span = Object.assign(document.createElement("span"), { className: "caption", textContent: caption, title: caption });
  b.append(img, span);
  b.onclick = onclick;
  return b;
}

// The round × button that deletes what it sits on.
function deleteButton(label, onclick) {
  const del = Object.assign(document.createElement("button"), { type: "button", className: "delete", textContent: "×",
                                                                 title: label, onclick });
  del.setAttribute("aria-label", label);
  return del;
}

function tile(style, own) {
  const li = document.createElement("li");
  const b = pictureButton(style.thumb, style.name, state.styles.some((c) => c.id === style.id), () => toggle(style));
  b.dataset.id = style.id;
  li.append(b);
  if (own) li.append(deleteButton(`Delete my style ${style.name}`, () => deleteMine(style)));
  return li;
}

function weightRow(style, i) {
  const row = Object.assign(document.createElement("div"), { className: "weight-row" });
  const input = Object.assign(document.createElement("input"), { type: "range", min: "0", max: "1", step: "0.05",
                                                                 value: String(style.weight), className: "weight",
                                                                 id: `weight-${i}` });
  const label = Object.assign(document.createElement("label"), { htmlFor: input.id, textContent: "Weight" });
  const out = Object.assign(document.createElement("output"), { textContent: style.weight.toFixed(2) });
  out.htmlFor = input.id;
  input.oninput = () => { setWeight(i, Number(input.value)); later(); };
  row.append(label, input, out);
  return row;
}

function chosenItem(style, i) {
  const li = document.createElement("li");
  const img = Object.assign(document.createElement("img"), { src: style.thumb, alt: "" });
  const prefix = state.mask ? (i === 0 ? "White: " : "Black: ") : "";
  const name = Object.assign(document.createElement("span"), { className: "name", textContent: prefix + style.name,
                                                               title: style.name });
  const del = Object.assign(document.createElement("button"), { type: "button", className: "button secondary",
                                                                textContent: "Remove", onclick: () => { remove(i); later(); } });
  del.setAttribute("aria-label", `Remove ${style.name}`);
  li.append(img, name, del);
  if (state.styles.length > 1 && !state.mask) li.append(weightRow(style, i)); // weights: several styles, no mask
  return li;
}

function historyItem(item) {
  const li = document.createElement("li");
  const show = pictureButton(item.thumbUrl, item.caption, state.shownHistory === item.entry.id,
                             () => history.restore(item.entry));
  show.className = "show";
  const compare = Object.assign(document.createElement("button"), { type: "button", className: "button secondary small",
                                                                    textContent: "Compare",
                                                                    title: `Compare the result shown with ${item.caption}`,
                                                                    onclick: () => history.compareWith(item) });
  compare.setAttribute("aria-label", compare.title);
  li.append(show, compare, deleteButton(`Delete ${item.caption} from the history`, () => history.remove(item.entry.id)));
  return li;
}

view((s) => {
  const pressed = s.styles.map((c) => c.id);
  list($("gallery"), s.presets, [s.presets.map((p) => [p.id, p.thumb]), pressed], (p) => tile(p, false));
  list($("my-styles"), s.mine, [s.mine.map((p) => [p.id, p.thumb, p.name]), pressed], (p) => tile(p, true));
  shown("my-styles-row", s.mine.length > 0);
  // without keys every visitor is the same (local) tenant: these are everyone's uploads, not yours
  set($("h-my-styles").firstChild, "textContent", s.limits.api_key_required ? "My styles " : "Uploaded styles ");
  list($("chosen"), s.styles, [s.styles.map((c) => [c.id, c.key, c.name, c.thumb]), !!s.mask], chosenItem);
  s.styles.forEach((c, i) => { // the weights' values in place: a slider being dragged is not rebuilt
    const out = $("chosen").querySelectorAll("output")[i];
    if (out) set(out, "textContent", c.weight.toFixed(2));
  });
  list($("history"), s.history, [s.history.map((h) => h.entry.id), s.shownHistory], historyItem);
  shown("history-row", s.history.length > 0);
});
