// The photo flow: a photo (and a mask), /stylize, the result; once a result is on screen a change
// of α, colours, weights or mask updates it by itself a moment later.
import { errorText, send, sleep } from "./api.js";
import { inspect, outputSize } from "./files.js";
import { hold, remember } from "./history.js";
import { begin, claim, end, progress, running } from "./jobs.js";
import { note, say, state, update } from "./store.js";
import { registrations } from "./styles.js";
import { EXTENSIONS, downloadName, megapixels, resultCaption, seconds } from "./text.js";

const MAX_RETRIES = 5;
const UPDATE_DELAY_MS = 300; // after the last change of a slider, before the result is asked for again
const LONG_SECONDS = 30; // a render estimated longer than this is asked for once
const asked = new Set(); // the long renders the user already agreed to (photo and size)
let updateTimer = 0;

export async function setPhoto(file) {
  if (!file) return;
  try {
    const photo = await inspect(file, "the photo");
    update((s) => { s.photo = photo; s.outdated = !!s.result; s.shownHistory = null; });
    note("content", photo.w ? `${photo.name}: ${photo.w}×${photo.h}. Choose or drop another to replace it.` : photo.name);
    say("");
  } catch (e) {
    note("content", e.message, true);
    say(e.message, "error");
    update((s) => { s.outdated = !!s.result; });
  }
}

export async function setMask(file) {
  if (!file) return;
  try {
    const mask = await inspect(file, "the mask");
    update((s) => { s.mask = mask; s.outdated = !!s.result; });
    note("mask", "");
    later();
  } catch (e) {
    note("mask", e.message, true);
  }
}

export function clearMask() {
  update((s) => { s.mask = null; s.outdated = !!s.result; });
  note("mask", "");
  later();
}

// The mask's problem as a sentence, or "" when it can be sent.
export function maskProblem(s = state) {
  const m = s.mask;
  if (!m) return "";
  if (s.styles.length !== 2) {
    return `A mask needs exactly two styles (white → first, black → second); ${s.styles.length} chosen.`;
  }
  if (s.photo && s.photo.w && m.w) {
    const photo = s.photo.w / s.photo.h, mask = m.w / m.h;
    if (Math.abs(mask - photo) > s.limits.mask_aspect_tolerance * photo) {
      return `The mask is ${m.w}×${m.h} but the photo is ${s.photo.w}×${s.photo.h}: their shapes differ. ` +
             "Use a mask made from this photo.";
    }
  }
  return "";
}

export const zeroWeights = (s = state) => s.styles.length > 1 && !s.mask && s.styles.every((x) => x.weight === 0);

export function validate() {
  if (!state.photo) return "Choose a photo first.";
  if (!state.styles.length) return "Choose at least one style.";
  if (zeroWeights()) return "Give at least one style a weight above 0.";
  const mask = maskProblem();
  if (mask) return mask;
  const out = outputSize(state.photo, state.options.size);
  if (out && out[0] * out[1] > state.limits.max_output_pixels) {
    return `At that size the result would be ${out[0]}×${out[1]} (${megapixels(out[0] * out[1])}); ` +
           `the largest is ${megapixels(state.limits.max_output_pixels)}: choose a smaller size.`;
  }
  return "";
}

// The style fields /stylize and /videos share, from a snapshot of the inputs.
export function appendStyles(form, { styles, mask, options }) {
  for (const s of styles) { // field order = style order (pairs with weights and the mask)
    if (s.id && !(options.preserve && s.file)) form.append("style_id", s.id);
    else form.append("style", s.file);
  }
  if (styles.length > 1 && !mask) form.append("weights", styles.map((s) => s.weight).join(","));
  form.append("alpha", String(options.alpha));
  form.append("color_match", String(options.colorMatch));
  form.append("matching", options.matching || "adain");
  form.append("preserve_color", options.preserve ? "true" : "false");
}

// The photo goes once: a later render of it at the same size sends the server's content id
// (X-Content-Id) instead of the file, while the server keeps its features.
export function buildForm(made, byId = true) {
  const form = new FormData();
  const id = byId && made.photo.ids && made.photo.ids[made.options.size];
  if (id) form.append("content_id", id);
  else form.append("content", made.photo.file);
  appendStyles(form, made);
  form.append("content_size", made.options.size);
  form.append("format", made.options.format);
  if (made.options.decoder) form.append("decoder", made.options.decoder);
  if (made.mask) form.append("mask", made.mask.file);
  return form;
}

// What a render is made of (the result and the history keep it, whatever changes meanwhile).
const snapshot = () => ({ photo: state.photo, mask: state.mask, options: { ...state.options },
                          styles: state.styles.map((s) => ({ ...s, registering: undefined })) });

// Seconds this render should take: the server's measured speed, or this page's own when slower.
export function estimate() {
  const out = outputSize(state.photo, state.options.size);
  const perMp = Math.max(state.limits.seconds_per_megapixel || 0, state.measured || 0);
  return out ? (perMp * out[0] * out[1]) / 1e6 : 0;
}

// A long render is asked for once (per photo and size); an automatic update never starts one.
function longAgreed(auto, seconds_) {
  const key = `${state.photo.key}@${state.options.size}`;
  if (seconds_ <= LONG_SECONDS || asked.has(key)) return true;
  if (auto) return false;
  if (!confirm(`This render should take about ${seconds(seconds_)}. Start it?`)) return false;
  asked.add(key);
  return true;
}

export async function stylize(auto = false) {
  const problem = validate();
  if (problem) { if (!auto) say(problem, "error"); return; }
  if (auto && state.job && state.job.kind !== "photo") { update((s) => { s.pendingUpdate = true; }); return; }
  if (!auto && !(await claim("photo", "this photo"))) return;
  const est = estimate();
  if (!longAgreed(auto, est)) {
    if (auto) say(`Stylize to update: this size takes about ${seconds(est)}.`);
    return;
  }
  if (state.job && state.job.kind === "photo") { // the newest inputs win
    const old = state.job;
    old.replaced = true;
    update((s) => { s.job = null; });
    old.stop();
  }
  await registrations(); // uploads go by id once registered
  const made = snapshot();
  let request = null;
  const job = begin("photo", auto ? "Updating" : "Stylizing", () => request && request.abort(), { estimate: est, auto });
  say("");
  let byId = true;
  try {
    for (let attempt = 0; ; attempt++) {
      if (!running(job)) return;
      request = send(buildForm(made, byId), "stylize", (f) => progress(job, { upload: f }));
      const xhr = await request.done;
      if (xhr.status === 404 && byId && made.photo.ids && made.photo.ids[made.options.size]) {
        byId = false; // no longer kept: the file again
        continue;
      }
      if (xhr.status === 503 && attempt < MAX_RETRIES) { // busy: honour Retry-After, then try again
        const wait = Math.max(1, Number(xhr.getResponseHeader("Retry-After")) || 2);
        progress(job, { label: `The server is busy, retrying in ${wait} s` });
        await sleep(wait * 1000);
        continue;
      }
      if (!running(job)) return;
      if (xhr.status !== 200) { // the last good result stays, marked as not showing these settings
        const text = await errorText(xhr.status, xhr.response);
        update((s) => { s.outdated = !!s.result; });
        say(text + (state.result ? " The result shown is from before." : ""), "error");
        return;
      }
      await showResult(xhr, made, performance.now() - job.started, auto);
      return;
    }
  } catch (e) {
    if (job.replaced) return;
    if (e.name !== "AbortError") say(`${e.message} Check your connection and try again.`, "error");
    else say(state.result ? "Stopped; the result shown is from before." : "Stopped.");
    update((s) => { s.outdated = !!s.result; });
  } finally {
    end(job);
  }
}

async function showResult(xhr, made, ms, auto) {
  const w = Number(xhr.getResponseHeader("X-Image-Width")), h = Number(xhr.getResponseHeader("X-Image-Height"));
  const id = xhr.getResponseHeader("X-Content-Id");
  if (id) made.photo.ids = { ...made.photo.ids, [made.options.size]: id };
  const name = downloadName(made.photo.name, made.styles, made.options.format);
  const result = { url: URL.createObjectURL(xhr.response), blob: xhr.response, w, h, format: made.options.format,
                   ms: Math.round(ms), name, made, before: made.photo.url, beforeLabel: "",
                   // said only where there is a choice of decoders
                   version: state.models && state.models.versions.length > 1 ? xhr.getResponseHeader("X-Model-Version")
                                                                              : null };
  update((s) => {
    if (s.result && s.result.url !== result.url) URL.revokeObjectURL(s.result.url);
    s.result = result;
    s.outdated = false;
    s.measured = ms / 1000 / ((w * h) / 1e6); // this page's own speed corrects the next estimate
    s.shownHistory = null;
  });
  // an explicit render brings its result into view, once it is drawn (the render is queued first)
  if (!auto) queueMicrotask(() => document.getElementById("result-panel").scrollIntoView({ block: "start" }));
  say("Done.");
  remember(result, auto);
}

// Once a result is on screen, a change re-renders it by itself, a moment after the last change.
export function later() {
  if (state.mode === "live") { document.dispatchEvent(new Event("adain:live-settings")); return; }
  if (!state.result || state.mode !== "photo") return;
  clearTimeout(updateTimer);
  hold();
  updateTimer = setTimeout(() => stylize(true), UPDATE_DELAY_MS);
}
document.addEventListener("adain:update", later);

// The format only changes the download: the pixels on screen are encoded again in the browser
// (JPEG and WebP at the server's own qualities) instead of stylizing again.
export async function changeFormat(format) {
  update((s) => { s.options.format = format; });
  const r = state.result;
  if (!r || r.format === format) return;
  const img = document.getElementById("result");
  const canvas = Object.assign(document.createElement("canvas"), { width: img.naturalWidth, height: img.naturalHeight });
  canvas.getContext("2d").drawImage(img, 0, 0);
  const blob = await new Promise((res) => canvas.toBlob(res, `image/${format}`, { jpeg: 0.92, webp: 0.9 }[format]));
  if (!blob || state.result !== r) return;
  update(() => {
    r.format = format;
    r.download = URL.createObjectURL(blob);
    r.name = r.name.replace(/\.[^.]*$/, `.${EXTENSIONS[format]}`);
  });
}

export const caption = (r) => resultCaption(r.made.photo.name, r.made.styles, r.made.options, r.w, r.h, r.version);
