// This browser's results, kept in IndexedDB (never on the server): an entry per result the user
// kept looking at (an explicit render, or the last automatic update after a pause), with its
// photo, mask, styles and options, so that restoring it makes the next change render that photo.
import { inspect } from "./files.js";
import { note, say, state, update } from "./store.js";
import { pictureOf } from "./styles.js";
import { resultCaption } from "./text.js";

const HISTORY_MAX = 40;
const PAUSE_MS = 3000; // an automatic update is kept once nothing changed for this long
let db = null;
let pending = 0;

function open() {
  if (db) return Promise.resolve(db);
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("adain-history", 2);
    req.onupgradeneeded = () => {
      const d = req.result;
      if (d.objectStoreNames.contains("results")) d.deleteObjectStore("results"); // entries without their photo
      d.createObjectStore("results", { keyPath: "id", autoIncrement: true });
      d.createObjectStore("files", { keyPath: "key" }); // photos and masks, once however many entries use them
    };
    req.onsuccess = () => { db = req.result; resolve(db); };
    req.onerror = () => reject(req.error);
  });
}

async function run(store, mode, work) { // work(objectStore) -> an IDBRequest; its result
  const d = await open();
  return new Promise((resolve, reject) => {
    const req = work(d.transaction(store, mode).objectStore(store));
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function thumbnail(blob, side = 160) {
  const bitmap = await createImageBitmap(blob);
  const k = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
  const canvas = Object.assign(document.createElement("canvas"), { width: Math.max(1, Math.round(bitmap.width * k)),
                                                                   height: Math.max(1, Math.round(bitmap.height * k)) });
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return new Promise((res) => canvas.toBlob(res, "image/jpeg", 0.8));
}

export const describe = (e) => resultCaption(e.photoName, e.styles, e.options, e.w, e.h, e.version);

// A result on screen: kept now (an explicit render) or after a pause (an automatic update; a
// newer one within the pause replaces it).
export function remember(result, auto) {
  clearTimeout(pending);
  if (auto) pending = setTimeout(() => keep(result), PAUSE_MS);
  else keep(result);
}

// The inputs changed again before the pause ended: the result waiting to be kept was only a step.
export function hold() {
  clearTimeout(pending);
}

async function keep(r) {
  try {
    const { photo, mask, styles, options } = r.made;
    for (const f of [photo, mask].filter(Boolean)) await run("files", "readwrite", (s) => s.put({ key: f.key, file: f.file }));
    const entry = { time: Date.now(), blob: r.blob, thumb: await thumbnail(r.blob), w: r.w, h: r.h, ms: r.ms,
                    name: r.name, photoName: photo.name, photoKey: photo.key, maskKey: mask ? mask.key : null,
                    version: r.version || null,
                    styles: styles.map((s) => ({ id: s.id || null, name: s.name, preset: !!s.preset, weight: s.weight })),
                    options };
    entry.id = await run("results", "readwrite", (s) => s.add(entry));
    const keys = await run("results", "readonly", (s) => s.getAllKeys());
    for (const old of keys.slice(0, Math.max(0, keys.length - HISTORY_MAX))) await drop(old);
    if (state.result === r) update((s) => { s.shownHistory = entry.id; });
  } catch { /* private windows may have no IndexedDB: the page works without a history */ }
  await load();
}

async function load() {
  let entries = [];
  try { entries = (await run("results", "readonly", (s) => s.getAll())).reverse(); } catch { /* no history */ }
  update((s) => {
    for (const old of s.history) URL.revokeObjectURL(old.thumbUrl);
    s.history = entries.map((entry) => ({ entry, thumbUrl: URL.createObjectURL(entry.thumb), caption: describe(entry) }));
  });
  return entries;
}

async function drop(id) {
  await run("results", "readwrite", (s) => s.delete(id));
  const left = await run("results", "readonly", (s) => s.getAll());
  const used = new Set(left.flatMap((e) => [e.photoKey, e.maskKey]));
  for (const key of await run("files", "readonly", (s) => s.getAllKeys())) {
    if (!used.has(key)) await run("files", "readwrite", (s) => s.delete(key));
  }
}

export async function remove(id) {
  await drop(id);
  await load();
}

export async function clear() {
  try {
    await run("results", "readwrite", (s) => s.clear());
    await run("files", "readwrite", (s) => s.clear());
  } catch { /* nothing kept */ }
  await load();
}

async function storedImage(key, what) {
  const row = key && await run("files", "readonly", (s) => s.get(key));
  return row ? inspect(row.file, what) : null;
}

// Show an entry again with everything it was made with: photo, mask, styles and options.
export async function restore(entry) {
  const photo = await storedImage(entry.photoKey, "the photo").catch(() => null);
  if (!photo) { say("This result's photo is no longer in this browser."); return false; }
  const mask = await storedImage(entry.maskKey, "the mask").catch(() => null);
  const styles = await Promise.all(entry.styles.filter((x) => x.id).map(async (x) => ({ ...x, thumb: await pictureOf(x.id) })));
  const url = URL.createObjectURL(entry.blob);
  const made = { photo, mask, styles, options: { ...entry.options } };
  update((s) => {
    if (s.result) URL.revokeObjectURL(s.result.url);
    Object.assign(s, { photo, mask, styles, options: { ...s.options, ...entry.options }, outdated: false,
                       shownHistory: entry.id, pendingUpdate: false });
    s.result = { url, blob: entry.blob, w: entry.w, h: entry.h, format: entry.options.format, ms: entry.ms,
                 name: entry.name, made, before: photo.url, beforeLabel: "", fromHistory: true, version: entry.version };
  });
  note("content", `${photo.name}: ${photo.w}×${photo.h}. Choose or drop another to replace it.`);
  note("styles", styles.length < entry.styles.length ? "A style of this result was sent as a file and could not " +
                                                      "come back: add it again to update the result." : "");
  say("");
  return true;
}

// The before / after line between the result shown and another one from the history.
export function compareWith(item) {
  if (!state.result) return;
  update((s) => { s.result.before = URL.createObjectURL(item.entry.blob); s.result.beforeLabel = item.caption; });
}

// A reload: the newest entry comes back whole, or the page starts empty (and says nothing).
export async function resume() {
  const entries = await load();
  if (entries.length && !state.photo && await restore(entries[0])) say(`Your last result is back: ${describe(entries[0])}.`);
}
