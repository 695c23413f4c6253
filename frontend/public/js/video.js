// The video flow: a clip, POST /videos (202 and a job), the job followed until its MP4 plays. The
// job is the page's current job: Stop deletes it on the server, a tab switch keeps it, a reload
// follows it again (its id is kept for this tab).
import { call, errorText, send, sleep, authHeaders } from "./api.js";
import { begin, claim, end, progress, running } from "./jobs.js";
import { appendStyles } from "./photo.js";
import { note, say, state, update } from "./store.js";
import { registrations } from "./styles.js";
import { megabytes, megapixels, rate, seconds, stem } from "./text.js";

const KEPT = "adain-video-job";
const POLL_MS = 700;

// What the browser can tell of a clip before it is sent (it may not decode every codec the server does).
function metadata(file) {
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

export async function setVideo(file) {
  if (!file) return;
  update((s) => { s.video = null; s.videoResult = null; }); // a new clip: the old result goes
  const { limits } = state;
  if (file.size > limits.max_video_bytes) {
    note("video", `${file.name} is ${megabytes(file.size)}; the largest video is ${megabytes(limits.max_video_bytes)}.`, true);
    return;
  }
  const meta = await metadata(file);
  if (Number.isFinite(meta.seconds) && meta.seconds > limits.max_video_seconds) {
    note("video", `${file.name} is ${seconds(meta.seconds)} long; the longest is ${seconds(limits.max_video_seconds)}.`, true);
    return;
  }
  update((s) => { s.video = { file, name: file.name, ...meta }; });
  const facts = [file.name, megabytes(file.size)];
  if (meta.w) facts.splice(1, 0, `${meta.w}×${meta.h}`, seconds(meta.seconds));
  note("video", facts.join(" · "));
  say("");
}

function validate() {
  if (!state.video) return "Choose a video clip first.";
  if (!state.styles.length) return "Choose at least one style.";
  if (state.styles.length > 1 && state.styles.every((s) => s.weight === 0)) return "Give at least one style a weight above 0.";
  const side = Number(state.options.videoSize), { w, h } = state.video;
  if (w && h) {
    const k = side ? side / Math.min(w, h) : 1, out = Math.round(w * k) * Math.round(h * k);
    if (out > state.limits.max_video_pixels) {
      return `At that size a frame would be ${megapixels(out)}; the largest is ${megapixels(state.limits.max_video_pixels)}: ` +
             "choose a smaller frame size.";
    }
  }
  return "";
}

function videoJob(name) {
  let request = null;
  const job = begin("video", "Video", async () => {
    if (request) request.abort();
    sessionStorage.removeItem(KEPT);
    if (job.url) await call(job.url, { method: "DELETE" }).catch(() => {});
  }, { name });
  job.sending = (form) => { request = send(form, "videos", (f) => progress(job, { upload: f })); return request.done; };
  return job;
}

export async function startVideo() {
  const problem = validate();
  if (problem) { say(problem, "error"); return; }
  if (!(await claim("video", "this video"))) return;
  await registrations();
  const name = `${stem(state.video.name) || "video"}-in-${state.styles.map((x) => stem(x.name)).slice(0, 3).join("+")}.mp4`;
  const form = new FormData();
  form.append("video", state.video.file);
  appendStyles(form, { styles: state.styles, mask: null, options: state.options });
  form.append("content_size", state.options.videoSize);
  form.append("stabilize", state.options.videoSteady ? "true" : "false");
  update((s) => { s.videoResult = null; });
  say("");
  const job = videoJob(name);
  try {
    const xhr = await job.sending(form);
    if (xhr.status !== 202) { say(await errorText(xhr.status, xhr.response, "a video"), "error"); end(job); return; }
    const accepted = JSON.parse(await xhr.response.text());
    progress(job, { id: accepted.id, url: accepted.status_url.replace(/^\//, ""), upload: 1 });
    sessionStorage.setItem(KEPT, JSON.stringify({ url: job.url, name }));
    await follow(job);
  } catch (e) {
    if (e.name !== "AbortError") { say(`${e.message} Check your connection and try again.`, "error"); end(job); }
  }
}

// Poll the job until it ends, its frames and ETA (the server's, from its measured speed) shown.
async function follow(job) {
  while (running(job)) {
    const r = await call(job.url).catch(() => null);
    if (!running(job)) return;
    if (!r) { await sleep(POLL_MS); continue; } // a moment without the server: try again
    if (!r.ok) {
      sessionStorage.removeItem(KEPT);
      if (r.status !== 404) say(await errorText(r.status, r), "error");
      end(job);
      return;
    }
    const s = await r.json();
    const eta = s.eta_seconds != null && s.state === "running" ? ` · about ${seconds(s.eta_seconds)} left` : "";
    const speed = s.frames_per_second ? ` · ${rate(s.frames_per_second)}` : "";
    const parts = s.segments_total > 1 && s.state === "running" ? ` · ${s.segments_done} of ${s.segments_total} parts` : "";
    progress(job, { done: s.frames_done, total: Math.max(1, s.frames_total), detail: s.state === "queued"
      ? "waiting for the server…" : `${s.frames_done} / ${s.frames_total} frames${speed}${eta}${parts}` });
    if (s.state === "done") { await show(job, s); return; }
    if (s.state === "failed" || s.state === "cancelled") {
      sessionStorage.removeItem(KEPT);
      say(`The video failed: ${s.error || s.state}`, "error");
      end(job);
      return;
    }
    await sleep(POLL_MS);
  }
}

async function show(job, s) {
  let src = s.result_url.replace(/^\//, "");
  if (Object.keys(authHeaders()).length) { // a <video> cannot send the key: fetch it, play the copy
    src = URL.createObjectURL(await (await call(src)).blob());
  }
  sessionStorage.removeItem(KEPT);
  const text = `${s.width}×${s.height} · ${s.frames_total} frames at ${s.fps.toFixed(3).replace(/\.?0+$/, "")} fps` +
               (s.audio ? " · with sound" : "") + ` · ${megabytes(s.result_bytes)}`;
  update((st) => { st.videoResult = { src, name: job.name, text }; });
  say("The video is ready.");
  end(job);
}

// A reload while a video renders: follow it again.
export function resume() {
  const kept = JSON.parse(sessionStorage.getItem(KEPT) || "null");
  if (!kept || state.job) return;
  const job = videoJob(kept.name);
  progress(job, { url: kept.url, upload: 1 });
  follow(job);
}
