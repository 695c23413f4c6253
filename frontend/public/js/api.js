// The API on the same origin, by relative URLs: the page works at / (one process) and behind
// nginx (compose, Kubernetes) alike. The key lives in this tab's sessionStorage, never in a URL.
import { state, update } from "./store.js";
import { friendly } from "./text.js";

const KEY = "adain-api-key";

export function apiKey() { return sessionStorage.getItem(KEY) || ""; }

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

export const call = (url, init = {}) => fetch(url, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });

// One POST over XMLHttpRequest (fetch cannot report upload progress): { done, abort }; done
// resolves with the finished request (any status), rejects with an AbortError when aborted.
export function send(form, url, onProgress = () => {}) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open("POST", url);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.responseType = "blob";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new Error("Cannot reach the server."));
    xhr.onabort = () => reject(new DOMException("stopped", "AbortError"));
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

async function detailOf(body) {
  let detail = "";
  try { detail = JSON.parse(await body.text()).detail; } catch { /* not JSON (e.g. a proxy's page) */ }
  if (typeof detail !== "string") detail = detail ? JSON.stringify(detail) : "";
  return friendly(detail);
}

// A refusal as a sentence; `what` names the upload ("an image", "a video").
export async function errorText(status, body, what = "an image") {
  const detail = await detailOf(body);
  switch (status) {
    case 401: update((s) => { s.keyNeeded = true; }); return "An API key is needed: enter it below and try again.";
    case 413: return `Too large: ${detail || "the upload is over the server's limit"}`;
    case 415: return what === "a video" ? `Not a video this server can read: ${detail}` : `Not an image: ${detail}`;
    case 504: return "The server took too long; try a smaller output size.";
    default: return detail || `The server answered ${status}.`;
  }
}

export async function loadLimits() {
  try {
    const r = await fetch("limits");
    if (r.ok) {
      const limits = await r.json();
      update((s) => { s.limits = { ...s.limits, ...limits }; s.keyNeeded = limits.api_key_required; });
    }
  } catch { /* the defaults in the state */ }
}

export async function loadModels() {
  try {
    const r = await fetch("models");
    if (r.ok) {
      const models = await r.json();
      update((s) => { s.models = models; });
    }
  } catch { /* one decoder: no choice shown */ }
}

// An <img> cannot send the key: a registered style's picture is fetched with it, and shown from
// a blob URL (made once per style).
const pictures = new Map();

export function authedPicture(url) {
  if (!pictures.has(url)) {
    pictures.set(url, call(url).then(async (r) => (r.ok ? URL.createObjectURL(await r.blob()) : null))
      .catch(() => null));
  }
  return pictures.get(url);
}

// The server's picture of an image the browser cannot draw (HEIC, TIFF): { url, w, h } or null
// when it cannot make one; an Error when it says the file is not an image.
export async function serverPreview(file) {
  const form = new FormData();
  form.append("image", file);
  const r = await call("preview", { method: "POST", body: form }).catch(() => null);
  if (!r) return null;
  if (r.status === 415 || r.status === 413) throw new Error(await errorText(r.status, r));
  if (!r.ok) return null;
  return { url: URL.createObjectURL(await r.blob()), w: Number(r.headers.get("X-Image-Width")),
           h: Number(r.headers.get("X-Image-Height")) };
}

export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
