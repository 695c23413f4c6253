// Live: the camera through GET /ws/stylize, a frame at a time (the newest wins). The stream is the
// page's current job: Stop (or the tab's button) closes it and clears its picture and numbers.
import { authHeaders } from "./api.js";
import { begin, claim, end, progress, running, stop } from "./jobs.js";
import { say, state, update } from "./store.js";
import { registrations } from "./styles.js";
import { friendly, rate } from "./text.js";

const FPS = 15; // frames offered per second; the server answers as fast as it draws

function settingsMessage() {
  const ids = state.styles.map((s) => s.id);
  const o = state.options;
  const message = { style_id: ids, alpha: Number(o.alpha), color_match: Number(o.colorMatch),
                    matching: o.matching || "adain", content_size: Number(o.liveSize), stabilize: o.liveSteady };
  if (ids.length > 1) message.weights = state.styles.map((s) => s.weight);
  const key = authHeaders()["X-API-Key"];
  if (key) message.api_key = key; // a browser cannot set headers on a WebSocket
  return JSON.stringify(message);
}

let socket = null;

export async function liveSettings() {
  if (!socket || !state.styles.length || state.styles.every((s) => s.weight === 0)) return;
  await registrations();
  if (socket.readyState === WebSocket.OPEN && state.styles.every((s) => s.id)) socket.send(settingsMessage());
}
document.addEventListener("adain:live-settings", liveSettings);

export async function toggleLive() {
  if (state.job && state.job.kind === "live") { await stop(); return; }
  if (!state.styles.length) { say("Choose at least one style.", "error"); return; }
  if (state.styles.length > 1 && state.styles.every((s) => s.weight === 0)) {
    say("Give at least one style a weight above 0.", "error");
    return;
  }
  if (!(await claim("live", "the camera"))) return;
  await registrations(); // streams take styles by id
  if (state.styles.some((s) => !s.id)) { say("A style could not be registered; remove it and try again.", "error"); return; }
  let camera;
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    say(`The camera cannot be used: ${e.message || e.name}.`, "error");
    return;
  }
  open(camera);
}

function open(camera) {
  const preview = document.getElementById("camera");
  preview.srcObject = camera;
  const url = new URL("ws/stylize", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  ws.binaryType = "blob";
  socket = ws;
  const answers = [];
  let ready = false, timer = 0;
  const job = begin("live", "Live", () => {
    clearInterval(timer);
    camera.getTracks().forEach((t) => t.stop());
    if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
    preview.srcObject = null;
    if (socket === ws) socket = null;
    update((s) => { if (s.live) URL.revokeObjectURL(s.live.url); s.live = null; }); // no stale picture or numbers
  }, { detail: "Live: connecting…" });
  say("");
  ws.onopen = () => ws.send(settingsMessage());
  ws.onmessage = (e) => {
    if (!running(job)) return;
    if (typeof e.data !== "string") { // a stylized frame
      const now = performance.now();
      answers.push(now);
      while (now - answers[0] > 5000) answers.shift();
      update((s) => {
        if (s.live) URL.revokeObjectURL(s.live.url);
        s.live = { url: URL.createObjectURL(e.data), stats: s.live ? s.live.stats : "" };
      });
      return;
    }
    const m = JSON.parse(e.data);
    if (m.type === "ready") { ready = true; progress(job, { detail: "Live: waiting for the first picture…" }); }
    else if (m.type === "status") {
      // the rate over the last 5 s as this page sees it (the server's is over 1 s)
      const fps = answers.length > 1 ? (answers.length - 1) / ((answers[answers.length - 1] - answers[0]) / 1000) : 0;
      const stats = `${fps ? rate(fps) : "waiting for frames"} · ${m.latency_ms_p50 ?? "–"} ms from camera to screen · ` +
        `${m.frames_dropped} camera frames skipped (the camera is faster than the server: only the newest is drawn)`;
      progress(job, { detail: `Live · ${fps ? rate(fps) : "starting"}` });
      update((s) => { if (s.live) s.live.stats = stats; });
    } else if (m.type === "error") say(friendly(m.detail), "error");
  };
  ws.onclose = (e) => {
    if (!running(job)) return;
    job.stop();
    end(job);
    if (e.code !== 1000) say(e.reason || "The live stream ended (the server closed it).", "error");
  };
  const canvas = document.createElement("canvas");
  timer = setInterval(() => { // offer a frame when the last one has left the browser
    if (!ready || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > 0 || !preview.videoWidth) return;
    const k = Number(state.options.liveSize) / Math.min(preview.videoWidth, preview.videoHeight);
    canvas.width = Math.round(preview.videoWidth * k);
    canvas.height = Math.round(preview.videoHeight * k);
    canvas.getContext("2d").drawImage(preview, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((b) => { if (b && ws.readyState === WebSocket.OPEN) ws.send(b); }, "image/jpeg", 0.8);
  }, 1000 / FPS);
}
