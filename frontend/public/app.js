// adain-service web page: plain JS, no build step. Talks to the API on the same origin with
// relative URLs, so it works at / (single process) and behind nginx (compose, Kubernetes) alike.
"use strict";

const MAX_RETRIES = 5;
const AUTO_DELAY_MS = 300; // after the last change of a slider, before the result is asked for again

const BROWSER_UNREADABLE = /^image\/(tiff|x-tiff|heic|heif|heic-sequence|heif-sequence)$/; // the server reads these; Chromium cannot decode them
const HEIF_NAME = /\.(heic|heif)$/i; // phones' photos, often sent with no type at all
const $ = (id) => document.getElementById(id);

// What the server accepts; replaced by GET /limits when it answers.
// The fallbacks are the server's defaults (service/settings.py).
let limits = { max_file_bytes: 20 * 2 ** 20, max_image_pixels: 8192 * 8192, max_output_pixels: 8192 * 8192, max_styles: 8,
               max_video_bytes: 200 * 2 ** 20, max_video_seconds: 300, max_video_pixels: 1920 * 1080,
               mask_aspect_tolerance: 0.02, seconds_per_megapixel: 0 };
const state = {
  mode: "photo",       // the tab: "photo", "video" or "live"
  content: null,       // { file, w, h, url }
  video: null,         // { file, w?, h?, seconds? } (what the browser could read of it)
  job: null,           // { id, url } of the video job being followed
  live: null,          // { ws, stream, timer, url } while the camera is on
  styles: [],          // { name, thumb, weight, id?, file?, registering? }
  mask: null,          // { file, w, h, url }
  result: null,        // { url, name, blob, format }: the image on screen
  request: null,       // the XMLHttpRequest in flight
  autoTimer: 0,
  stylizeSeq: 0,
};

// ---- messages ------------------------------------------------------------------------------------
function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = kind;
}

function hint(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", isError);
}

const megapixels = (n) => `${(n / 1e6).toFixed(1)} megapixels`;
const megabytes = (n) => (n < 2 ** 20 ? `${Math.ceil(n / 1024)} KB` : `${(n / 2 ** 20).toFixed(1)} MB`);

// The server's sentences, for people: no setting names, big numbers grouped.
function friendly(detail) {
  return String(detail)
    .replace(/\s*\(ADAIN_[A-Z_]+\)/g, "")
    .replace(/\b\d{5,}\b/g, (n) => Number(n).toLocaleString("en"));
}

// ---- checking an image before it is sent ---------------------------------------------------------
function formatList() {
  const f = limits.input_formats || ["PNG", "JPEG", "WebP", "GIF", "BMP", "TIFF", "HEIC", "AVIF"];
  return `${f.slice(0, -1).join(", ")} or ${f[f.length - 1]}`;
}

async function inspect(file, what) {
  const type = file.type || (HEIF_NAME.test(file.name) ? "image/heic" : "");
  if (!type.startsWith("image/")) {
    throw new Error(`Not an image: ${what} (${file.name}) is ${file.type || "not an image file"}. ` +
                    `Choose a ${formatList()} image.`);
  }
  if (file.size > limits.max_file_bytes) {
    throw new Error(`Too large: ${what} (${file.name}) is ${megabytes(file.size)}; ` +
                    `the largest file accepted is ${megabytes(limits.max_file_bytes)}.`);
  }
  let w = 0, h = 0;
  try {
    const bitmap = await createImageBitmap(file);
    [w, h] = [bitmap.width, bitmap.height];
    bitmap.close();
  } catch {
    if (!BROWSER_UNREADABLE.test(type)) {
      throw new Error(`Not an image: ${what} (${file.name}) cannot be read as a picture. ` +
                      `Choose a ${formatList()} image.`);
    }
  }
  if (w * h > limits.max_image_pixels) {
    throw new Error(`Too large: ${what} (${file.name}) is ${w}×${h} (${megapixels(w * h)}); ` +
                    `the largest accepted is ${megapixels(limits.max_image_pixels)}.`);
  }
  return { file, w, h, url: URL.createObjectURL(file) };
}

function outputSize() {
  const side = Number($("size").value);
  if (!state.content || !state.content.w) return null;
  const { w, h } = state.content;
  if (side === 0) return [w, h]; // the original size
  const scale = side / Math.min(w, h);
  return [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))];
}

// ---- the photo -----------------------------------------------------------------------------------
async function setContent(file) {
  if (!file) return;
  markOutdated(); // the last result stays (with its own "before") until the next one
  try {
    state.content = await inspect(file, "the photo");
  } catch (e) {
    state.content = null;
    $("content-frame").hidden = true;
    $("content-hint").hidden = false;
    hint("content-info", e.message, true);
    setStatus(e.message, "error");
    return;
  }
  $("content-preview").src = state.content.url;
  $("content-frame").hidden = false;
  $("content-hint").hidden = true;
  const { w, h } = state.content;
  hint("content-info", w ? `${file.name}: ${w}×${h}. Choose or drop another to replace it.` : file.name);
  setStatus("");
  checkMask();
}

// ---- styles: presets from GET /styles, and uploads (registered once, then used by id) -------------
// A style registered earlier (not a preset, no file in this tab): the server keeps only its code.
function usesStoredCode() { return state.styles.some((s) => !s.file && !s.preset); }

function renderChosen() {
  const list = $("chosen");
  list.replaceChildren();
  const weighted = state.styles.length > 1 && !state.mask;
  state.styles.forEach((s, i) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = s.thumb || "favicon.svg";
    img.alt = "";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = (state.mask ? (i === 0 ? "White: " : "Black: ") : "") + s.name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button secondary";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${s.name}`);
    remove.onclick = () => { state.styles.splice(i, 1); stylesChanged(); };
    li.append(img, name, remove);
    if (weighted) { // a weight per style only makes sense with several, and not with a mask
      const row = document.createElement("div");
      row.className = "weight-row";
      const w = document.createElement("input");
      w.type = "range"; w.min = "0"; w.max = "1"; w.step = "0.05"; w.value = String(s.weight);
      w.className = "weight";
      w.id = `weight-${i}`;
      const label = document.createElement("label"); // a visible label, not only one for screen readers
      label.htmlFor = w.id;
      label.textContent = "Weight";
      const out = document.createElement("output");
      out.htmlFor = w.id;
      out.textContent = s.weight.toFixed(2);
      w.oninput = () => { s.weight = Number(w.value); out.textContent = s.weight.toFixed(2); checkWeights(); autoRender(); };
      row.append(label, w, out);
      li.append(row);
    }
    list.append(li);
  });
}

function syncGallery() {
  for (const b of document.querySelectorAll("#gallery button, #my-styles button[data-id]")) {
    b.setAttribute("aria-pressed", String(state.styles.some((s) => s.id === b.dataset.id && !s.file)));
  }
}

function checkWeights() {
  const zero = state.styles.length > 1 && !state.mask && state.styles.every((s) => s.weight === 0);
  hint("styles-info", zero ? "Give at least one style a weight above 0." : "", zero);
  return !zero;
}

function stylesChanged() {
  syncGallery();
  renderChosen();
  checkWeights();
  // colour preservation recolours style images: uploads and presets have theirs, a style
  // registered earlier has only its code on the server
  const codeOnly = usesStoredCode();
  $("preserve-color").disabled = codeOnly;
  if (codeOnly) $("preserve-color").checked = false;
  hint("preserve-help", codeOnly ? "Not with styles from My styles: the server keeps only their style code, " +
                                 "not the image to recolour." : "");
  checkMask();
  markOutdated();
  if (state.mode === "live") liveSettings();
}

function addStyle(style) {
  if (state.styles.length >= limits.max_styles) {
    hint("styles-info", `At most ${limits.max_styles} styles per image.`, true);
    return false;
  }
  style.weight = 1;
  state.styles.push(style);
  stylesChanged();
  return true;
}

async function addStyleFiles(files) {
  const problems = []; // every bad file said, not only the last one
  for (const f of files) {
    let checked;
    try {
      checked = await inspect(f, "the style image");
    } catch (e) {
      problems.push(e.message);
      hint("styles-info", problems.join(" "), true);
      continue;
    }
    const style = { file: f, name: f.name, thumb: checked.url };
    if (addStyle(style)) style.registering = register(style);
  }
}

// Register an uploaded style once, so that a live preview sends its id, not the image again.
async function register(style) {
  const form = new FormData();
  form.append("style", style.file);
  form.append("name", style.name.slice(0, 100));
  // kept for a while, not for good: the page's uploads never fill the server's store
  if (limits.page_style_ttl) form.append("ttl", String(limits.page_style_ttl));
  try {
    const r = await fetch("styles", { method: "POST", body: form, headers: authHeaders() });
    if (r.ok) {
      style.id = (await r.json()).id;
      loadMyStyles();
    }
  } catch { /* the file is sent with each request instead */ }
}

// A style tile that toggles the style in the chosen list (presets and my styles alike).
// A toggle button showing a picture and a caption (the style galleries, the history).
function pictureButton(src, text, pressed, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.setAttribute("aria-pressed", String(pressed));
  const img = document.createElement("img");
  img.src = src;
  img.alt = "";
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = text;
  b.append(img, caption);
  b.onclick = onclick;
  return b;
}

// The round × button that deletes what it sits on.
function deleteButton(label, onclick) {
  const del = document.createElement("button");
  del.type = "button";
  del.className = "delete";
  del.textContent = "×";
  del.title = del.ariaLabel = label;
  del.onclick = onclick;
  return del;
}

function styleTile(s, thumb) {
  const b = pictureButton(thumb, s.name || s.id, false, () => {
    const i = state.styles.findIndex((x) => x.id === s.id && !x.file);
    if (i >= 0) { state.styles.splice(i, 1); stylesChanged(); }
    else addStyle({ id: s.id, name: s.name || s.id, thumb, preset: s.kind === "preset" });
  });
  b.dataset.id = s.id;
  return b;
}

async function loadGallery() {
  try {
    const r = await fetch("styles?limit=100", { headers: authHeaders() });
    if (!r.ok) return;
    const { styles } = await r.json();
    for (const s of styles.filter((x) => x.kind === "preset")) {
      const li = document.createElement("li");
      li.append(styleTile(s, s.thumbnail_url ? s.thumbnail_url.replace(/^\//, "") : "favicon.svg"));
      $("gallery").append(li);
    }
  } catch { /* no gallery: uploads still work */ }
}

// "My styles": the styles this key registered (uploads on this page are kept for page_style_ttl).
// The server keeps no image of them, so a tile shows this tab's copy when it has one.
async function loadMyStyles() {
  const list = $("my-styles");
  let mine = [];
  try {
    const r = await fetch("styles?limit=500", { headers: authHeaders() });
    if (r.ok) mine = (await r.json()).styles.filter((x) => x.kind === "uploaded");
  } catch { /* shown empty */ }
  list.replaceChildren();
  for (const s of mine) {
    const local = state.styles.find((x) => x.id === s.id && x.file);
    const li = document.createElement("li");
    const del = deleteButton(`Delete my style ${s.name || s.id}`, async () => {
      const r = await fetch(`styles/${encodeURIComponent(s.id)}`, { method: "DELETE", headers: authHeaders() });
      if (r.ok || r.status === 404) {
        const i = state.styles.findIndex((x) => x.id === s.id);
        if (i >= 0) { state.styles.splice(i, 1); stylesChanged(); }
        loadMyStyles();
      }
    });
    li.append(styleTile(s, local ? local.thumb : "favicon.svg"), del);
    list.append(li);
  }
  $("my-styles-row").hidden = !mine.length;
  // without keys every visitor is the same (local) tenant: these are everyone's uploads, not yours
  $("h-my-styles").firstChild.textContent = limits.api_key_required ? "My styles " : "Uploaded styles ";
  syncGallery();
}

async function loadLimits() {
  try {
    const r = await fetch("limits");
    if (r.ok) limits = await r.json();
  } catch { /* the defaults above */ }
  $("max-styles").textContent = String(limits.max_styles);
  if (limits.api_key_required) $("key-row").hidden = false;
}

// ---- the mask ------------------------------------------------------------------------------------
async function setMask(file) {
  if (!file) return;
  try {
    state.mask = await inspect(file, "the mask");
  } catch (e) {
    hint("mask-info", e.message, true);
    return;
  }
  $("mask-overlay").src = state.mask.url;
  $("mask-clear").hidden = false;
  $("mask-pick").textContent = `Mask: ${file.name} (choose or drop another to replace it)`;
  stylesChanged();
  autoRender();
}

function clearMask() {
  state.mask = null;
  $("mask-overlay").hidden = true;
  $("mask-clear").hidden = true;
  $("mask-pick").textContent = "Choose a mask, or drop one here";
  $("mask-file").value = "";
  hint("mask-info", "White areas get the first style, black ones the second. The mask must have the photo's shape " +
       "(aspect ratio).");
  stylesChanged();
}

// The mask's problems, as a sentence, or "" when it can be sent.
function maskProblem() {
  const m = state.mask;
  if (!m) return "";
  if (state.styles.length !== 2) return `A mask needs exactly two styles (white → first, black → second); ` +
                                        `${state.styles.length} chosen.`;
  if (state.content && state.content.w && m.w) {
    const photo = state.content.w / state.content.h, mask = m.w / m.h;
    if (Math.abs(mask - photo) > limits.mask_aspect_tolerance * photo) {
      return `The mask is ${m.w}×${m.h} but the photo is ${state.content.w}×${state.content.h}: ` +
             "their shapes differ. Use a mask made from this photo.";
    }
  }
  return "";
}

function checkMask() {
  const problem = maskProblem();
  if (state.mask) {
    hint("mask-info", problem || "White areas get the first style, black ones the second.", Boolean(problem));
    $("mask-overlay").hidden = !state.content || Boolean(problem);
  }
  return !problem;
}

// ---- sending -------------------------------------------------------------------------------------
// The key lives in this tab's sessionStorage (gone when the tab closes), never in a URL.
function authHeaders() {
  const key = $("api-key").value || sessionStorage.getItem("adain-api-key") || "";
  return key ? { "X-API-Key": key } : {};
}

function keyChanged() {
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem("adain-api-key", key);
  else sessionStorage.removeItem("adain-api-key");
  if (!$("gallery").children.length) loadGallery(); // a server with keys lists nothing without one
  loadMyStyles();
}

// The style fields /stylize and /videos share.
function appendStyles(form) {
  const recolour = $("preserve-color").checked;
  for (const s of state.styles) { // field order = style order (pairs with weights and the mask)
    if (s.id && !(recolour && s.file)) form.append("style_id", s.id);
    else form.append("style", s.file);
  }
  if (state.styles.length > 1 && !state.mask) form.append("weights", state.styles.map((s) => s.weight).join(","));
  form.append("alpha", $("alpha").value);
  form.append("color_match", $("color-match").value);
  form.append("preserve_color", recolour ? "true" : "false");
}

function buildForm() {
  const form = new FormData();
  form.append("content", state.content.file);
  appendStyles(form);
  form.append("content_size", $("size").value);
  form.append("format", $("format").value);
  if (state.mask) form.append("mask", state.mask.file);
  return form;
}

// One POST over XMLHttpRequest (fetch cannot report upload progress).
function send(form, onProgress, url = "stylize") {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    state.request = xhr;
    xhr.open("POST", url);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.responseType = "blob";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => { if (state.request === xhr) state.request = null; resolve(xhr); };
    xhr.onerror = () => { if (state.request === xhr) state.request = null; reject(new Error("Cannot reach the server.")); };
    xhr.onabort = () => reject(new DOMException("cancelled", "AbortError"));
    xhr.send(form);
  });
}

async function errorText(xhr) {
  let detail = "";
  try { detail = JSON.parse(await xhr.response.text()).detail; } catch { /* not JSON (e.g. a proxy page) */ }
  if (typeof detail !== "string") detail = detail ? JSON.stringify(detail) : "";
  detail = friendly(detail);
  switch (xhr.status) {
    case 401: $("key-row").hidden = false; return "An API key is needed: enter it below and try again.";
    case 413: return `Too large: ${detail || "the upload is over the server's limit"}`;
    case 415: return state.mode === "video" ? `Not a video this server can read: ${detail}` : `Not an image: ${detail}`;
    case 504: return "The server took too long; try a smaller output size.";
    default: return detail || `The server answered ${xhr.status}.`;
  }
}

function validate() {
  if (!state.content) return "Choose a photo first.";
  if (!state.styles.length) return "Choose at least one style.";
  if (!checkWeights()) return "Give at least one style a weight above 0.";
  if (!checkMask()) return maskProblem();
  const out = outputSize();
  if (out && out[0] * out[1] > limits.max_output_pixels) {
    return `At ${$("size").selectedOptions[0].textContent} the result would be ${out[0]}×${out[1]} (${megapixels(out[0] * out[1])}); ` +
           `the largest is ${megapixels(limits.max_output_pixels)}: choose a smaller size.`;
  }
  return "";
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
const stem = (name) => name.replace(/\.[^.]*$/, "").replace(/[^\w-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);

const EXTENSIONS = { png: "png", jpeg: "jpg", webp: "webp" };

function downloadName() {
  const ext = EXTENSIONS[$("format").value];
  const styles = state.styles.map((s) => stem(s.name)).filter(Boolean).slice(0, 3).join("+") || "style";
  return `${stem(state.content.file.name) || "photo"}-in-${styles}.${ext}`;
}

function clearResult() {
  if (state.request) state.request.abort();
  state.result = null;
  $("result-panel").classList.remove("outdated");
  $("outdated-note").hidden = true;
  $("result-panel").hidden = true;
  $("result").removeAttribute("src");
  $("result-before").removeAttribute("src");
  delete $("result").dataset.width;
}

function busy(on, auto = false) {
  $("stylize").disabled = on && !auto;
  $("stylize").textContent = on && !auto ? "Stylizing…" : state.mode === "video" ? "Stylize video" : "Stylize";
  $("progress-row").hidden = !on;
  if (!on) $("upload-progress").value = 0;
}

// Stylize with the current inputs. ``auto``: a re-render after a slider moved (no scrolling; the
// previous result stays until the new one is there).
async function stylize(auto = false) {
  const problem = validate();
  if (problem) {
    if (!auto) setStatus(problem, "error");
    return;
  }
  if (state.request) state.request.abort(); // the newest inputs win
  const seq = ++state.stylizeSeq;
  await Promise.all(state.styles.map((s) => s.registering)); // uploads go by id once registered
  busy(true, auto);
  setStatus(auto ? "Updating…" : "Stylizing…", "busy");
  startClock(auto);
  const started = performance.now();
  try {
    for (let attempt = 0; ; attempt++) {
      const xhr = await send(buildForm(), (f) => { $("upload-progress").value = Math.round(100 * f); });
      if (xhr.status === 503 && attempt < MAX_RETRIES) { // busy: honour Retry-After, then try again
        const wait = Math.max(1, Number(xhr.getResponseHeader("Retry-After")) || 2);
        setStatus(`The server is busy, retrying in ${wait} s…`, "busy");
        await sleep(wait * 1000);
        if (seq !== state.stylizeSeq) return;
        continue;
      }
      if (xhr.status !== 200) { // the last good result stays, marked as not showing these settings
        const text = await errorText(xhr);
        markOutdated();
        setStatus(text + (state.result ? " The result shown is from before." : ""), "error");
        return;
      }
      showResult(xhr, Math.round(performance.now() - started), auto);
      return;
    }
  } catch (e) {
    if (e.name === "AbortError") { // cancelled: a clean state, the last result (if any) marked as older
      if (seq === state.stylizeSeq) {
        markOutdated();
        setStatus(state.result ? "Cancelled; the result shown is from before." : "Cancelled.");
      }
      return;
    }
    markOutdated();
    setStatus(`${e.message} Check your connection and try again.`, "error");
  } finally {
    if (seq === state.stylizeSeq) { busy(false); stopClock(); }
  }
}

// A long render says how long it should take (the server's measured speed) and how long it has.
function startClock(auto) {
  stopClock();
  const out = outputSize() || [state.content.w, state.content.h];
  const estimate = (limits.seconds_per_megapixel || 0) * out[0] * out[1] / 1e6;
  const started = performance.now();
  const tick = () => {
    const spent = (performance.now() - started) / 1000;
    if (spent < 3 && estimate < 3) return;
    const about = estimate >= 3 ? `about ${seconds(estimate)}, ` : "";
    setStatus(`${auto ? "Updating" : "Stylizing"}… (${about}${seconds(spent)} so far)`, "busy");
  };
  state.clock = setInterval(tick, 1000);
}

function stopClock() {
  clearInterval(state.clock);
  state.clock = 0;
}

// The result on screen no longer shows the inputs (a style, the photo or the mask changed, a
// render failed or was cancelled): said on the result, until the next one comes.
function markOutdated() {
  if (!state.result) return;
  $("result-panel").classList.add("outdated");
  $("outdated-note").hidden = false;
}

function showResult(xhr, ms, auto) {
  if (state.result) URL.revokeObjectURL(state.result.url);
  const url = URL.createObjectURL(xhr.response);
  const w = xhr.getResponseHeader("X-Image-Width"), h = xhr.getResponseHeader("X-Image-Height");
  state.result = { url, name: downloadName(), blob: xhr.response, format: $("format").value, ms };
  $("result-panel").classList.remove("outdated");
  $("outdated-note").hidden = true;
  $("result").src = url;
  $("result").dataset.width = w;
  $("result").dataset.height = h;
  $("result-before").src = state.content.url;
  $("full-image").src = url;
  $("result-caption").textContent = `${w}×${h} · ${$("format").value.toUpperCase()} · ${ms} ms`;
  $("download").href = url;
  $("download").download = state.result.name;
  $("result-panel").hidden = false;
  $("compare-label").textContent = "Before / after";
  setStatus("Done.");
  if (!auto) $("result-panel").scrollIntoView({ block: "start", behavior: "instant" });
  remember(xhr.response, Number(w), Number(h), ms);
}

// A picture (an <img>, a bitmap) drawn at w×h and encoded in the browser: a Blob.
function encodePicture(source, w, h, format, quality) {
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(source, 0, 0, w, h);
  return new Promise((res) => canvas.toBlob(res, `image/${format}`, quality));
}

// The format only changes the download: the pixels on screen are encoded again here, in the
// browser, instead of stylizing again (JPEG and WebP at the server's own qualities).
async function changeFormat() {
  const r = state.result, format = $("format").value, img = $("result");
  if (!r || r.format === format) return;
  if ($("download").href !== r.url) URL.revokeObjectURL($("download").href);
  const [w, h] = [img.naturalWidth, img.naturalHeight];
  const blob = await encodePicture(img, w, h, format, { jpeg: 0.92, webp: 0.9 }[format]);
  if (!blob || state.result !== r) return;
  r.format = format;
  $("download").href = URL.createObjectURL(blob);
  $("download").download = r.name = r.name.replace(/\.[^.]*$/, `.${EXTENSIONS[format]}`);
  $("result-caption").textContent = `${w}×${h} · ${format.toUpperCase()} · ${r.ms} ms`;
}

// Once a result is on screen, a change re-renders it by itself, a moment after the last change
// ("live" in this file is only the camera's stream).
function autoRender() {
  if (state.mode === "live") { liveSettings(); return; }
  if (!state.result || state.mode !== "photo") return;
  clearTimeout(state.autoTimer);
  state.autoTimer = setTimeout(() => stylize(true), AUTO_DELAY_MS);
}

// ---- history: this browser's results, kept in IndexedDB (never on the server) --------------------
const HISTORY_MAX = 40;
let historyDb = null;

function historyStore(mode) {
  return new Promise((resolve, reject) => {
    if (historyDb) { resolve(historyDb.transaction("results", mode).objectStore("results")); return; }
    const open = indexedDB.open("adain-history", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("results", { keyPath: "id", autoIncrement: true });
    open.onsuccess = () => { historyDb = open.result; resolve(historyDb.transaction("results", mode).objectStore("results")); };
    open.onerror = () => reject(open.error);
  });
}

const stored = (request) => new Promise((resolve, reject) => { // an IndexedDB request's result
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

async function thumbnail(blob, side = 160) {
  const bitmap = await createImageBitmap(blob);
  const k = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
  const small = await encodePicture(bitmap, Math.max(1, Math.round(bitmap.width * k)),
                                    Math.max(1, Math.round(bitmap.height * k)), "jpeg", 0.8);
  bitmap.close();
  return small;
}

// What a result was made with: enough to show it again with its settings.
function currentSettings() {
  return {
    styles: state.styles.map((s) => ({ id: s.id || null, name: s.name, preset: !!s.preset, weight: s.weight })),
    alpha: $("alpha").value, colorMatch: $("color-match").value, size: $("size").value,
    format: $("format").value, preserve: $("preserve-color").checked,
  };
}

// The photo, small, for the before/after line when a history entry is shown again: made once per
// photo (a 12 MP photo is not decoded again for every automatic re-render); null for a HEIC,
// which the browser cannot draw.
function smallPhoto(content) {
  if (!content.small) content.small = thumbnail(content.file, 1024).catch(() => null);
  return content.small;
}

async function remember(blob, w, h, ms) {
  try {
    const before = await smallPhoto(state.content);
    const entry = { time: Date.now(), blob, thumb: await thumbnail(blob), before, w, h, ms, name: downloadName(),
                    photo: state.content?.file.name || "", settings: currentSettings() };
    const store = await historyStore("readwrite");
    entry.id = await stored(store.add(entry));
    const keys = await stored((await historyStore("readonly")).getAllKeys());
    for (const old of keys.slice(0, Math.max(0, keys.length - HISTORY_MAX))) {
      await stored((await historyStore("readwrite")).delete(old));
    }
    state.shownHistory = entry.id;
  } catch { /* private windows may have no IndexedDB: the page works without a history */ }
  await renderHistory();
}

function describe(entry) {
  const s = entry.settings;
  const names = s.styles.map((x) => x.name).slice(0, 3).join(" + ") || "style";
  const time = new Date(entry.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `${names} · α ${Number(s.alpha).toFixed(2)} · ${entry.w}×${entry.h} · ${time}`;
}

async function renderHistory() {
  let entries = [];
  try { entries = await stored((await historyStore("readonly")).getAll()); } catch { /* no history */ }
  const list = $("history");
  for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  list.replaceChildren();
  for (const entry of entries.reverse()) {
    const li = document.createElement("li");
    const show = pictureButton(URL.createObjectURL(entry.thumb), describe(entry), state.shownHistory === entry.id,
                               () => showHistory(entry));
    show.className = "show";
    const compare = document.createElement("button");
    compare.type = "button";
    compare.className = "button secondary small";
    compare.textContent = "Compare";
    compare.title = compare.ariaLabel = `Compare the result shown with ${describe(entry)}`;
    compare.onclick = () => compareWith(entry);
    const del = deleteButton(`Delete ${describe(entry)} from the history`, async () => {
      await stored((await historyStore("readwrite")).delete(entry.id));
      renderHistory();
    });
    li.append(show, compare, del);
    list.append(li);
  }
  $("history-row").hidden = !entries.length;
  if (entries.length && !state.result) showHistory(entries[0], false); // a reload: the newest is back on screen
}

// Show a result from the history again, with the settings it was made with (``restore``; not
// when the page opens with the newest one on screen).
function showHistory(entry, restore = true) {
  if (state.request) state.request.abort();
  if (state.result) URL.revokeObjectURL(state.result.url);
  const url = URL.createObjectURL(entry.blob), s = entry.settings;
  state.result = { url, name: entry.name || "stylized.png", blob: entry.blob, format: s.format, ms: entry.ms };
  state.shownHistory = entry.id;
  if (restore) restoreSettings(s);
  $("result").src = url;
  $("result").dataset.width = entry.w;
  $("result").dataset.height = entry.h;
  $("full-image").src = url;
  $("download").href = url;
  $("download").download = state.result.name;
  $("result-caption").textContent = `${describe(entry)} · ${s.format.toUpperCase()} · ${entry.ms} ms · from the history`;
  $("result-panel").classList.remove("outdated");
  $("outdated-note").hidden = true;
  $("result-panel").hidden = false;
  $("result-before").src = entry.before ? URL.createObjectURL(entry.before) : "";
  $("compare-label").textContent = entry.photo ? `Before / after (before: ${entry.photo})` : "Before / after";
  setStatus("");
  renderHistory();
}

function restoreSettings(s) {
  for (const [id, value] of [["alpha", s.alpha], ["color-match", s.colorMatch], ["size", s.size], ["format", s.format]]) {
    $(id).value = value;
  }
  $("alpha-value").textContent = Number(s.alpha).toFixed(2);
  $("color-match-value").textContent = Number(s.colorMatch).toFixed(2);
  $("preserve-color").checked = s.preserve;
  const byId = s.styles.filter((x) => x.id); // styles by id come back; one sent only as a file cannot
  if (byId.length) {
    const thumb = (id) => document.querySelector(`[data-id="${CSS.escape(id)}"] img`)?.src || "favicon.svg";
    state.styles = byId.map((x) => ({ id: x.id, name: x.name, preset: x.preset, weight: x.weight, thumb: thumb(x.id) }));
    stylesChanged();
  }
}

// The before/after line between the result shown and another one from the history.
function compareWith(entry) {
  if (!state.result) return;
  $("result-before").src = URL.createObjectURL(entry.blob);
  $("compare-label").textContent = `Before / after (before: ${describe(entry)})`;
}

// ---- video -------------------------------------------------------------------------------------
// frames/s when at least one a second, else seconds per frame ("0.1 frames/s" reads as nothing)
function rate(fps) {
  return fps >= 1 ? `${fps.toFixed(1)} frames/s` : `${(1 / fps).toFixed(1)} s per frame`;
}

function seconds(s) { // 89 s, 1 min 30 s; rounded once, so never "7 min 60 s"
  const t = Math.round(s);
  return t >= 90 ? `${Math.floor(t / 60)} min ${t % 60} s` : `${t} s`;
}

// What the browser can tell of a clip before it is sent (it may not decode every codec the server does).
function videoMetadata(file) {
  return new Promise((resolve) => {
    const v = document.createElement("video");
    const url = URL.createObjectURL(file);
    const done = (meta) => { URL.revokeObjectURL(url); resolve(meta); };
    v.preload = "metadata";
    v.onloadedmetadata = () => done({ w: v.videoWidth, h: v.videoHeight, seconds: v.duration });
    v.onerror = () => done({});
    setTimeout(() => done({}), 3000);
    v.src = url;
  });
}

async function setVideo(file) {
  if (!file) return;
  state.video = null;
  $("video-hint").textContent = "Choose a video clip (MP4, WebM, MOV, GIF …), or drop one here";
  if (file.size > limits.max_video_bytes) {
    hint("video-info", `${file.name} is ${megabytes(file.size)}; the largest video is ${megabytes(limits.max_video_bytes)}.`, true);
    return;
  }
  const meta = await videoMetadata(file);
  if (meta.seconds > limits.max_video_seconds && Number.isFinite(meta.seconds)) {
    hint("video-info", `${file.name} is ${seconds(meta.seconds)} long; the longest is ${seconds(limits.max_video_seconds)}.`, true);
    return;
  }
  state.video = { file, ...meta };
  $("video-hint").textContent = file.name;
  const facts = [file.name, megabytes(file.size)];
  if (meta.w) facts.splice(1, 0, `${meta.w}×${meta.h}`, seconds(meta.seconds));
  hint("video-info", facts.join(" · "));
  setStatus("");
}

function validateVideo() {
  if (!state.video) return "Choose a video clip first.";
  if (!state.styles.length) return "Choose at least one style.";
  if (!checkWeights()) return "Give at least one style a weight above 0.";
  const side = Number($("video-size").value), { w, h } = state.video;
  if (w && h) {
    const k = side ? side / Math.min(w, h) : 1, out = Math.round(w * k) * Math.round(h * k);
    if (out > limits.max_video_pixels) {
      return `At that size a frame would be ${megapixels(out)}; the largest is ${megapixels(limits.max_video_pixels)}: ` +
             "choose a smaller frame size.";
    }
  }
  return "";
}

function clearVideo() {
  $("video-panel").hidden = true;
  $("video-result").hidden = true;
  $("video-result").removeAttribute("src");
  $("video-download").hidden = true;
  $("job-progress").hidden = true;
  hint("job-status", "");
}

async function stylizeVideo() {
  const problem = validateVideo();
  if (problem) { setStatus(problem, "error"); return; }
  await Promise.all(state.styles.map((s) => s.registering));
  clearVideo();
  busy(true);
  setStatus("Uploading the clip…", "busy");
  const form = new FormData();
  form.append("video", state.video.file);
  appendStyles(form);
  form.append("content_size", $("video-size").value);
  form.append("stabilize", $("video-steady").checked ? "true" : "false");
  try {
    const xhr = await send(form, (f) => { $("upload-progress").value = Math.round(100 * f); }, "videos");
    if (xhr.status !== 202) {
      setStatus(await errorText(xhr), "error");
      return;
    }
    const job = JSON.parse(await xhr.response.text());
    state.job = { id: job.id, url: job.status_url.replace(/^\//, "") };
    await followJob(state.job);
  } catch (e) {
    if (e.name === "AbortError") setStatus("Cancelled.");
    else setStatus(`${e.message} Check your connection and try again.`, "error");
  } finally {
    state.job = null;
    busy(false);
  }
}

// Poll the job until it ends; the bar shows frames rendered.
async function followJob(job) {
  $("video-panel").hidden = false;
  $("progress-row").hidden = true; // the upload is done: one bar, the frames'
  $("job-progress").hidden = false;
  setStatus("Rendering…", "busy");
  for (;;) {
    const r = await fetch(job.url, { headers: authHeaders() });
    if (state.job !== job) return; // cancelled meanwhile
    if (!r.ok) { setStatus(friendly((await r.json().catch(() => ({}))).detail || `The server answered ${r.status}.`), "error"); return; }
    const s = await r.json();
    const total = Math.max(1, s.frames_total);
    $("job-progress").value = Math.round((100 * s.frames_done) / total);
    const eta = s.eta_seconds != null && s.state === "running" ? ` · about ${seconds(s.eta_seconds)} left` : "";
    const speed = s.frames_per_second ? ` · ${rate(s.frames_per_second)}` : "";
    // a clip is rendered in parts that any server may take: say how many are done
    const parts = s.segments_total > 1 && s.state === "running" ? ` · ${s.segments_done} of ${s.segments_total} parts done` : "";
    hint("job-status", s.state === "queued" ? "Waiting for the server…" : `${s.frames_done} / ${s.frames_total} frames${speed}${eta}${parts}`);
    if (s.state === "done") { await showVideo(s); return; }
    if (s.state === "failed" || s.state === "cancelled") { setStatus(`The video failed: ${friendly(s.error || s.state)}`, "error"); return; }
    await sleep(700);
  }
}

async function showVideo(s) {
  let src = s.result_url.replace(/^\//, "");
  if (Object.keys(authHeaders()).length) { // a <video> cannot send the key: fetch it, play the copy
    src = URL.createObjectURL(await (await fetch(src, { headers: authHeaders() })).blob());
  }
  const name = `${stem(state.video.file.name) || "video"}-in-${state.styles.map((x) => stem(x.name)).slice(0, 3).join("+")}.mp4`;
  $("video-result").src = src;
  $("video-result").hidden = false;
  $("video-download").href = src;
  $("video-download").download = name;
  $("video-download").hidden = false;
  $("job-progress").value = 100;
  hint("job-status", `${s.width}×${s.height} · ${s.frames_total} frames at ${s.fps.toFixed(3).replace(/\.?0+$/, "")} fps` +
       (s.audio ? " · with sound" : "") + ` · ${megabytes(s.result_bytes)}`);
  setStatus("Done.");
}

function cancelVideo() {
  if (state.request) state.request.abort();
  const job = state.job;
  if (!job) return;
  state.job = null;
  fetch(job.url, { method: "DELETE", headers: authHeaders() });
  $("job-progress").hidden = true;
  hint("job-status", "");
  setStatus("Cancelled.");
}

// ---- live: the camera through GET /ws/stylize ----------------------------------------------------
const LIVE_FPS = 15; // frames offered per second; the server answers as fast as it draws (latest wins)

function liveSettingsMessage() {
  const ids = state.styles.map((s) => s.id);
  const message = { style_id: ids, alpha: Number($("alpha").value), color_match: Number($("color-match").value),
                    content_size: Number($("live-size").value), stabilize: $("live-steady").checked };
  if (ids.length > 1) message.weights = state.styles.map((s) => s.weight);
  const key = authHeaders()["X-API-Key"];
  if (key) message.api_key = key; // a browser cannot set headers on a WebSocket
  return JSON.stringify(message);
}

async function liveSettings() {
  const l = state.live;
  if (!l || !state.styles.length || !checkWeights()) return;
  await Promise.all(state.styles.map((s) => s.registering));
  if (l.ws.readyState === WebSocket.OPEN && state.styles.every((s) => s.id)) l.ws.send(liveSettingsMessage());
}

async function startLive() {
  if (!state.styles.length) { setStatus("Choose at least one style.", "error"); return; }
  if (!checkWeights()) { setStatus("Give at least one style a weight above 0.", "error"); return; }
  await Promise.all(state.styles.map((s) => s.registering)); // streams take styles by id
  if (state.styles.some((s) => !s.id)) { setStatus("A style could not be registered; remove it and try again.", "error"); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    setStatus(`The camera cannot be used: ${e.message || e.name}.`, "error");
    return;
  }
  $("camera").srcObject = stream;
  const url = new URL("ws/stylize", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  ws.binaryType = "blob";
  const l = { ws, stream, timer: 0, url: null, ready: false, busy: false };
  state.live = l;
  $("live-start").textContent = "Stop the camera";
  $("live-panel").hidden = false;
  setStatus("Connecting…", "busy");
  ws.onopen = () => ws.send(liveSettingsMessage());
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") { // a stylized frame
      if (l.url) URL.revokeObjectURL(l.url);
      l.url = URL.createObjectURL(e.data);
      $("live-out").src = l.url;
      l.answers = [...(l.answers || []).filter((t) => performance.now() - t < 5000), performance.now()];
      return;
    }
    const m = JSON.parse(e.data);
    if (m.type === "ready") { l.ready = true; setStatus("Live."); }
    else if (m.type === "status") {
      // the rate over the last 5 s as this page sees it (the server's is over 1 s: 0 while a frame
      // takes longer than that)
      const recent = (l.answers || []).filter((t) => performance.now() - t < 5000);
      const fps = recent.length > 1 ? (recent.length - 1) / ((recent[recent.length - 1] - recent[0]) / 1000) : 0;
      $("live-stats").textContent = `${fps ? rate(fps) : "waiting for frames"} · ` +
        `${m.latency_ms_p50 ?? "–"} ms from camera to screen · ${m.frames_dropped} camera frames skipped ` +
        "(the camera is faster than the server: only the newest frame is drawn)";
    } else if (m.type === "error") setStatus(friendly(m.detail), "error");
  };
  ws.onclose = (e) => {
    if (state.live !== l) return;
    stopLive();
    if (e.code !== 1000) setStatus(e.reason || "The live stream ended (the server closed it).", "error");
  };
  const canvas = document.createElement("canvas");
  l.timer = setInterval(() => { // offer a frame when the last one has left the browser
    const v = $("camera");
    if (!l.ready || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > 0 || !v.videoWidth) return;
    const size = Number($("live-size").value), k = size / Math.min(v.videoWidth, v.videoHeight);
    canvas.width = Math.round(v.videoWidth * k);
    canvas.height = Math.round(v.videoHeight * k);
    canvas.getContext("2d").drawImage(v, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((b) => { if (b && ws.readyState === WebSocket.OPEN) ws.send(b); }, "image/jpeg", 0.8);
  }, 1000 / LIVE_FPS);
}

function stopLive() {
  const l = state.live;
  if (!l) return;
  state.live = null;
  clearInterval(l.timer);
  l.stream.getTracks().forEach((t) => t.stop());
  if (l.ws.readyState <= WebSocket.OPEN) l.ws.close(1000);
  $("camera").srcObject = null;
  $("live-start").textContent = "Start the camera";
  setStatus("");
}

function setMode(mode) {
  if (mode !== "live") stopLive();
  state.mode = mode;
  document.body.dataset.mode = mode;
  for (const [tab, panel, m] of [["tab-photo", "photo-step", "photo"], ["tab-video", "video-step", "video"],
                                 ["tab-live", "live-step", "live"]]) {
    $(tab).setAttribute("aria-selected", String(m === mode));
    $(tab).tabIndex = m === mode ? 0 : -1;
    $(panel).hidden = m !== mode;
  }
  $("preserve-label").textContent = mode === "video" ? "Keep the clip's colours" : "Keep the photo's colours";
  busy(false);
  setStatus("");
}

// ---- wiring ------------------------------------------------------------------------------------
// A drop zone: its button opens the file picker (Enter/Space on the keyboard too), and it takes
// dropped files.
function dropZone(zoneId, buttonId, inputId, take) {
  const zone = $(zoneId), input = $(inputId);
  $(buttonId).addEventListener("click", () => input.click());
  input.addEventListener("change", () => { take([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    take([...e.dataTransfer.files]);
  });
}

dropZone("content-drop", "content-pick", "content-file", (files) => setContent(files[0]));
dropZone("style-drop", "style-pick", "style-files", (files) => addStyleFiles(files));
dropZone("mask-drop", "mask-pick", "mask-file", (files) => setMask(files[0]));
dropZone("video-drop", "video-pick", "video-file", (files) => setVideo(files[0]));
const MODES = ["photo", "video", "live"];
for (const mode of MODES) {
  $(`tab-${mode}`).addEventListener("click", () => setMode(mode));
  $(`tab-${mode}`).addEventListener("keydown", (e) => { // arrow keys move between tabs
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const next = MODES[(MODES.indexOf(mode) + (e.key === "ArrowRight" ? 1 : MODES.length - 1)) % MODES.length];
    setMode(next);
    $(`tab-${next}`).focus();
  });
}
$("live-start").addEventListener("click", () => (state.live ? stopLive() : startLive()));
$("live-size").addEventListener("change", liveSettings);
$("live-steady").addEventListener("change", liveSettings);
$("mask-clear").addEventListener("click", () => { clearMask(); autoRender(); });

for (const [id, out] of [["alpha", "alpha-value"], ["color-match", "color-match-value"]]) {
  $(id).addEventListener("input", (e) => { $(out).textContent = Number(e.target.value).toFixed(2); autoRender(); });
}
$("preserve-color").addEventListener("change", autoRender);
$("format").addEventListener("change", changeFormat);
$("size").addEventListener("change", () => { const p = validate(); if (p) setStatus(p, "error"); else autoRender(); });
$("stylize").addEventListener("click", () => (state.mode === "video" ? stylizeVideo() : stylize(false)));
$("cancel").addEventListener("click", () => {
  if (state.mode === "video") cancelVideo();
  else if (state.request) state.request.abort();
});
$("compare-slider").addEventListener("input", (e) => {
  $("compare").style.setProperty("--pos", `${e.target.value}%`);
  e.target.setAttribute("aria-valuetext", `${e.target.value} % before`);
});
$("full-size").addEventListener("click", () => $("full-dialog").showModal());

// Dragging on the picture moves the before / after line (the slider follows: keyboard users keep it).
function dragCompare(e) {
  if (e.type !== "pointerdown" && !(e.buttons & 1)) return;
  const box = $("compare").getBoundingClientRect();
  const pos = Math.round(Math.min(100, Math.max(0, (100 * (e.clientX - box.left)) / box.width)));
  $("compare-slider").value = String(pos);
  $("compare-slider").dispatchEvent(new Event("input"));
}
$("compare").addEventListener("pointerdown", (e) => { $("compare").setPointerCapture(e.pointerId); dragCompare(e); });
$("compare").addEventListener("pointermove", dragCompare);

// Paste an image (a screenshot, a copied photo): into the styles when the styles area has the
// focus, else as the photo.
document.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
  if (!files.length || state.mode === "video") return;
  e.preventDefault();
  if ($("style-drop").contains(document.activeElement) || $("chosen").contains(document.activeElement)) {
    addStyleFiles(files);
  } else {
    setContent(files[0]);
  }
});

$("history-clear").addEventListener("click", async () => {
  try { await stored((await historyStore("readwrite")).clear()); } catch { /* nothing kept */ }
  renderHistory();
});
renderHistory();

$("api-key").value = sessionStorage.getItem("adain-api-key") || "";
$("api-key").addEventListener("change", keyChanged);
loadLimits().then(() => Promise.all([loadGallery(), loadMyStyles()]));
