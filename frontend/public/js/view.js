// The page drawn from the state: each function sets its part of the DOM from `state` alone, and
// sets only what changed (a slider being dragged, a focused button are left as they are).
import { describe, fraction } from "./jobs.js";
import { caption, maskProblem, zeroWeights } from "./photo.js";
import { view } from "./store.js";
import { codeOnly } from "./styles.js";

const $ = (id) => document.getElementById(id);
const MASK_HINT = "White areas get the first style, black ones the second. The mask must have the photo's shape " +
                  "(aspect ratio).";

function set(el, prop, value) { if (el[prop] !== value) el[prop] = value; }
function text(id, value) { set($(id), "textContent", value); }
function shown(id, on) { set($(id), "hidden", !on); }
function attr(el, name, value) {
  if (value == null) el.removeAttribute(name);
  else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value);
}

// A list rebuilt only when what it shows changed (its signature), so focus and drags survive redraws.
function list(el, items, signature, build) {
  const sig = JSON.stringify(signature);
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  el.replaceChildren(...items.map(build));
}

function hintLine(id, note, fallback = "") {
  const n = note || { text: fallback, error: false };
  text(id, n.text || fallback);
  $(id).classList.toggle("error", !!(n.text && n.error));
}

function drawTabs(s) {
  document.body.dataset.mode = s.mode;
  for (const m of ["photo", "video", "live"]) {
    attr($(`tab-${m}`), "aria-selected", String(m === s.mode));
    set($(`tab-${m}`), "tabIndex", m === s.mode ? 0 : -1);
    shown(`${m}-step`, m === s.mode);
  }
  text("preserve-label", s.mode === "video" ? "Keep the clip's colours" : "Keep the photo's colours");
  text("max-styles", String(s.limits.max_styles));
  shown("key-row", s.keyNeeded);
  for (const [id, accept] of [["content-file", s.limits.input_accept], ["style-files", s.limits.input_accept],
                              ["mask-file", s.limits.input_accept]]) set($(id), "accept", accept.join(","));
}

function drawMessages(s) {
  text("status", s.status.text);
  set($("status"), "className", s.status.kind);
  hintLine("content-info", s.notes.content);
  const styles = s.notes.styles && s.notes.styles.text ? s.notes.styles
    : zeroWeights(s) ? { text: "Give at least one style a weight above 0.", error: true } : null;
  hintLine("styles-info", styles);
  const mask = maskProblem(s);
  hintLine("mask-info", mask ? { text: mask, error: true } : s.notes.mask, s.mask ? "White areas get the first style, " +
           "black ones the second." : MASK_HINT);
  hintLine("video-info", s.notes.video);
}

function drawPhoto(s) {
  shown("content-frame", !!s.photo);
  shown("content-hint", !s.photo);
  attr($("content-preview"), "src", s.photo && s.photo.url);
  attr($("content-preview"), "alt", s.photo ? `your photo, ${s.photo.name}` : "your photo");
  attr($("mask-overlay"), "src", s.mask && s.mask.url);
  shown("mask-overlay", !!(s.mask && s.photo && s.mask.url && !maskProblem(s)));
  shown("mask-clear", !!s.mask);
  text("mask-pick", s.mask ? `Mask: ${s.mask.name} (choose or drop another to replace it)`
                           : "Choose a mask, or drop one here");
}

function drawOptions(s) {
  const o = s.options;
  set($("alpha"), "value", String(o.alpha));
  text("alpha-value", Number(o.alpha).toFixed(2));
  set($("color-match"), "value", String(o.colorMatch));
  text("color-match-value", Number(o.colorMatch).toFixed(2));
  set($("matching"), "value", o.matching || "adain");
  const only = codeOnly();
  set($("preserve-color"), "disabled", only);
  set($("preserve-color"), "checked", o.preserve && !only);
  for (const [id, key] of [["size", "size"], ["format", "format"], ["video-size", "videoSize"], ["live-size", "liveSize"]]) {
    set($(id), "value", String(o[key]));
  }
  const versions = s.models ? s.models.versions.map((v) => v.name) : [];
  shown("decoder-row", versions.length > 1);
  const choices = [["", `Default (${s.models ? s.models.default : ""})`], ...versions.map((n) => [n, n])];
  if ($("decoder").dataset.sig !== JSON.stringify(choices)) {
    $("decoder").dataset.sig = JSON.stringify(choices);
    $("decoder").replaceChildren(...choices.map(([value, label]) => Object.assign(document.createElement("option"),
                                                                                  { value, textContent: label })));
  }
  set($("decoder"), "value", o.decoder);
  set($("video-steady"), "checked", o.videoSteady);
  set($("live-steady"), "checked", o.liveSteady);
}

function drawJob(s) {
  const job = s.job;
  shown("job-row", !!job);
  if (job) {
    text("job-text", describe(job));
    const f = fraction(job);
    if (f == null) $("job-bar").removeAttribute("value"); // busy, amount unknown
    else $("job-bar").value = Math.round(100 * f);
    attr($("job-stop"), "aria-label", `Stop: ${describe(job)}`);
  }
  const photoBusy = job && job.kind === "photo" && !job.auto, videoBusy = job && job.kind === "video";
  const busy = s.mode === "video" ? videoBusy : photoBusy;
  set($("stylize"), "disabled", !!busy);
  text("stylize", busy ? (s.mode === "video" ? "Rendering the video…" : "Stylizing…")
                       : s.mode === "video" ? "Stylize video" : "Stylize");
  shown("result-busy", !!(job && job.kind === "photo" && s.result));
  if (job && job.kind === "photo") text("result-busy", describe(job));
  text("live-start", job && job.kind === "live" ? "Stop the camera" : "Start the camera");
}

function drawResult(s) {
  const r = s.result;
  shown("result-panel", !!r);
  if (!r) return;
  $("result-panel").classList.toggle("outdated", s.outdated);
  shown("outdated-note", s.outdated);
  attr($("result"), "src", r.url);
  attr($("result"), "data-width", r.w);
  attr($("result"), "data-height", r.h);
  attr($("full-image"), "src", r.url);
  attr($("result-before"), "src", r.before);
  text("compare-label", r.beforeLabel ? `Before / after (before: ${r.beforeLabel})` : "Before / after");
  text("result-caption", `${caption(r)} · ${r.format.toUpperCase()} · ${r.ms} ms${r.fromHistory ? " · from the history" : ""}`);
  attr($("download"), "href", r.download || r.url);
  attr($("download"), "download", r.name);
}

function drawVideo(s) {
  text("video-hint", s.video ? `${s.video.name} (choose or drop another to replace it)`
                             : "Choose a video clip (MP4, WebM, MOV, GIF …), or drop one here");
  const job = s.job && s.job.kind === "video" ? s.job : null, done = s.videoResult;
  shown("video-panel", !!(job || done));
  shown("job-progress", !!job);
  if (job) set($("job-progress"), "value", Math.round(100 * (fraction(job) || 0)));
  text("job-status", job ? describe(job) : done ? done.text : "");
  shown("video-result", !!done);
  attr($("video-result"), "src", done && done.src);
  shown("video-download", !!done);
  attr($("video-download"), "href", done && done.src);
  attr($("video-download"), "download", done && done.name);
}

function drawLive(s) {
  const on = s.job && s.job.kind === "live";
  shown("live-panel", !!on);
  shown("live-wait", !!(on && !s.live));
  shown("live-out", !!s.live);
  attr($("live-out"), "src", s.live && s.live.url);
  text("live-stats", s.live ? s.live.stats : "");
}

view(drawTabs);
view(drawMessages);
view(drawPhoto);
view(drawOptions);
view(drawJob);
view(drawResult);
view(drawVideo);
view(drawLive);

export { $, list, set, shown };
