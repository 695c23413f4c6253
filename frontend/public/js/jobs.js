// The one job the page runs at a time: a photo render, a video job or a live stream. It lives in
// the state, so every view shows it with its Stop, whatever the tab; starting another asks first
// (a newer photo render simply replaces an older one: the newest inputs win).
import { state, update, say } from "./store.js";
import { seconds } from "./text.js";

const LABELS = { photo: "A photo render", video: "A video", live: "The live stream" };

export function begin(kind, label, stop, extra = {}) {
  const job = { kind, label, stop, started: performance.now(), upload: null, done: 0, total: 0, eta: null,
                estimate: 0, detail: "", ...extra };
  update((s) => { s.job = job; });
  return job;
}

export const running = (job) => state.job === job;

// Change the running job's facts (progress, ETA) and redraw.
export function progress(job, facts) {
  if (!running(job)) return;
  update(() => { Object.assign(job, facts); });
}

// The job ended by itself (done, failed): the page is free again, and an update that waited runs.
export function end(job) {
  if (!running(job)) return;
  update((s) => { s.job = null; });
  if (state.pendingUpdate) {
    update((s) => { s.pendingUpdate = false; });
    document.dispatchEvent(new Event("adain:update"));
  }
}

// The Stop button: cancels the job on the server (the render's abort, DELETE /videos/{id}, the
// stream's close) and says so.
export async function stop() {
  const job = state.job;
  if (!job) return;
  update((s) => { s.job = null; });
  if (job.kind !== "photo") say(`${LABELS[job.kind]} was stopped.`);
  await job.stop();
}

// Before starting a job of `kind`: true when nothing else runs, or when the user agrees to stop it.
export async function claim(kind, what) {
  const job = state.job;
  if (!job || (job.kind === "photo" && kind === "photo")) return true;
  if (!confirm(`${LABELS[job.kind]} is still running. Stop it and start ${what}?`)) return false;
  await stop();
  return true;
}

// "Updating… about 4 s left": from the estimate, corrected by what the server says as it goes.
export function describe(job, now = performance.now()) {
  const spent = (now - job.started) / 1000;
  if (job.kind === "live") return job.detail || "Live: connecting…";
  if (job.upload != null && job.upload < 1) return `${job.label}: uploading, ${Math.round(100 * job.upload)} %`;
  if (job.kind === "video") return `${job.label}: ${job.detail || "waiting for the server…"}`;
  if (job.estimate >= 2) {
    const left = job.estimate - spent;
    return left > 1 ? `${job.label}… about ${seconds(left)} left`
                    : `${job.label}… longer than estimated (${seconds(spent)} so far)`;
  }
  return `${job.label}…` + (spent >= 3 ? ` (${seconds(spent)} so far)` : "");
}

// 0–1 when known (upload, frames, time against the estimate); null for "busy".
export function fraction(job, now = performance.now()) {
  if (job.upload != null && job.upload < 1) return job.upload;
  if (job.total) return job.done / job.total;
  if (job.estimate >= 2) return Math.min(0.97, (now - job.started) / 1000 / job.estimate);
  return null;
}

// While a job runs, its time-based text moves once a second.
setInterval(() => { if (state.job) update(); }, 1000);
