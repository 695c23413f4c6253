// adain-service web page: plain JS, no build step. Talks to the API on the same origin with
// relative URLs, so it works at / (single process) and behind nginx (compose) alike.
"use strict";

const MAX_STYLES = 8;
const MAX_RETRIES = 5;
const $ = (id) => document.getElementById(id);
const state = { content: null, styles: [], busy: false };

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = kind;
}

// ---- content photo: pick or drop -------------------------------------------------------------
function setContent(file) {
  if (!file) return;
  state.content = file;
  const url = URL.createObjectURL(file);
  $("content-preview").src = url;
  $("content-preview").hidden = false;
  $("content-hint").hidden = true;
  $("result-input").src = url;
  setStatus("");
}
$("content-file").addEventListener("change", (e) => setContent(e.target.files[0]));
const drop = $("content-drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  setContent(e.dataTransfer.files[0]);
});

// ---- styles: presets from GET /styles, and uploads ----------------------------------------------
function renderChosen() {
  const list = $("chosen");
  list.replaceChildren();
  state.styles.forEach((s, i) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = s.thumb || "";
    img.alt = "";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = s.name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button secondary";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", `remove ${s.name}`);
    remove.onclick = () => { state.styles.splice(i, 1); syncGallery(); renderChosen(); };
    li.append(img, name, remove);
    if (state.styles.length > 1) {  // a weight per style only makes sense with several
      const w = document.createElement("input");
      w.type = "range"; w.min = "0"; w.max = "1"; w.step = "0.05"; w.value = String(s.weight);
      w.className = "weight";
      w.setAttribute("aria-label", `weight of ${s.name}`);
      w.oninput = () => { s.weight = Number(w.value); };
      li.append(w);
    }
    list.append(li);
  });
}

function syncGallery() {
  for (const b of $("gallery").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(state.styles.some((s) => s.id === b.dataset.id)));
  }
}

function addStyle(style) {
  if (state.styles.length >= MAX_STYLES) {
    setStatus(`At most ${MAX_STYLES} styles per image.`, "error");
    return;
  }
  state.styles.push({ weight: 1, ...style });
  syncGallery();
  renderChosen();
}

async function loadGallery() {
  try {
    const r = await fetch("styles", { headers: authHeaders() });
    if (!r.ok) return;
    const { styles } = await r.json();
    for (const s of styles) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.id = s.id;
      b.title = s.name || s.id;
      b.setAttribute("aria-pressed", "false");
      const img = document.createElement("img");
      img.src = s.thumbnail_url ? s.thumbnail_url.replace(/^\//, "") : "";
      img.alt = s.name || s.id;
      b.append(img);
      b.onclick = () => {
        const i = state.styles.findIndex((x) => x.id === s.id);
        if (i >= 0) { state.styles.splice(i, 1); syncGallery(); renderChosen(); }
        else addStyle({ id: s.id, name: s.name || s.id, thumb: img.src });
      };
      $("gallery").append(b);
    }
  } catch { /* no gallery: uploads still work */ }
}

$("style-files").addEventListener("change", (e) => {
  for (const f of e.target.files) addStyle({ file: f, name: f.name, thumb: URL.createObjectURL(f) });
  e.target.value = "";
});

$("alpha").addEventListener("input", (e) => { $("alpha-value").textContent = Number(e.target.value).toFixed(2); });
$("color-match").addEventListener("input", (e) => {
  $("color-match-value").textContent = Number(e.target.value).toFixed(2);
});

// ---- stylize ------------------------------------------------------------------------------------
function authHeaders() {
  const key = $("api-key").value || localStorage.getItem("adain-api-key") || "";
  return key ? { "X-API-Key": key } : {};
}

function buildForm() {
  const form = new FormData();
  form.append("content", state.content);
  for (const s of state.styles) {  // field order = style order (pairs with weights and the mask)
    if (s.file) form.append("style", s.file);
    else form.append("style_id", s.id);
  }
  if (state.styles.length > 1) form.append("weights", state.styles.map((s) => s.weight).join(","));
  form.append("alpha", $("alpha").value);
  form.append("color_match", $("color-match").value);
  form.append("preserve_color", $("preserve-color").checked ? "true" : "false");
  form.append("content_size", $("size").value);
  const mask = $("mask-file").files[0];
  if (mask) form.append("mask", mask);
  return form;
}

async function errorText(r) {
  let detail = "";
  try { detail = (await r.json()).detail; } catch { /* not JSON (e.g. a proxy page) */ }
  if (typeof detail !== "string") detail = JSON.stringify(detail);
  switch (r.status) {
    case 401: $("key-row").hidden = false; return `API key needed: ${detail}`;
    case 413: return `Too large: ${detail || "the upload is over the server's limit"}`;
    case 415: return `Not an image: ${detail}`;
    case 504: return `Timed out: ${detail}`;
    default: return detail || `Error ${r.status}`;
  }
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

async function stylize() {
  if (state.busy) return;
  if (!state.content) { setStatus("Choose a photo first.", "error"); return; }
  if (!state.styles.length) { setStatus("Choose at least one style.", "error"); return; }
  if ($("api-key").value) localStorage.setItem("adain-api-key", $("api-key").value);
  state.busy = true;
  $("stylize").disabled = true;
  $("stylize").textContent = "Stylizing…";
  setStatus("Stylizing…", "busy");
  const started = performance.now();
  try {
    for (let attempt = 0; ; attempt++) {
      const r = await fetch("stylize", { method: "POST", body: buildForm(), headers: authHeaders() });
      if (r.status === 503 && attempt < MAX_RETRIES) {  // busy: honour Retry-After, then try again
        const wait = Math.max(1, Number(r.headers.get("Retry-After")) || 2);
        setStatus(`The server is busy, retrying in ${wait} s…`, "busy");
        await sleep(wait * 1000);
        setStatus("Stylizing…", "busy");
        continue;
      }
      if (!r.ok) { setStatus(await errorText(r), "error"); return; }
      const blob = await r.blob();
      const url = URL.createObjectURL(blob);
      const w = r.headers.get("X-Image-Width"), h = r.headers.get("X-Image-Height");
      $("result").src = url;
      $("result").dataset.width = w;
      $("result").dataset.height = h;
      $("result-caption").textContent = `Stylized · ${w}×${h} · ${Math.round(performance.now() - started)} ms`;
      $("download").href = url;
      $("download").hidden = false;
      setStatus("Done.");
      return;
    }
  } catch (e) {
    setStatus(`Cannot reach the server (${e.message}).`, "error");
  } finally {
    state.busy = false;
    $("stylize").disabled = false;
    $("stylize").textContent = "Stylize";
  }
}
$("stylize").addEventListener("click", stylize);

loadGallery();
