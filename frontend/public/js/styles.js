// Styles: presets from GET /styles, this tenant's registered styles with their pictures, and
// uploads (registered once, then sent by id). The chosen list is state.styles, in the order sent.
import { authedPicture, call } from "./api.js";
import { fileKey, inspect } from "./files.js";
import { note, state, update } from "./store.js";
import { listed } from "./text.js";

const thumbUrl = (s) => (s.thumbnail_url ? s.thumbnail_url.replace(/^\//, "") : null);

export async function loadStyles() {
  let styles = [];
  try {
    const r = await call("styles?limit=500");
    if (r.ok) styles = (await r.json()).styles;
  } catch { /* no gallery: uploads still work */ }
  const presets = styles.filter((s) => s.kind === "preset")
    .map((s) => ({ id: s.id, name: s.name || s.id, thumb: thumbUrl(s) || "favicon.svg", preset: true }));
  const mine = await Promise.all(styles.filter((s) => s.kind === "uploaded").map(async (s) => ({
    id: s.id, name: s.name || s.id, preset: false,
    thumb: (thumbUrl(s) && (await authedPicture(thumbUrl(s)))) || "favicon.svg",
  })));
  update((st) => {
    st.presets = presets;
    st.mine = mine;
    for (const chosen of st.styles) { // a style chosen before its picture was known gets it
      const known = mine.find((m) => m.id === chosen.id);
      if (known && chosen.thumb === "favicon.svg") chosen.thumb = known.thumb;
    }
  });
}

const sameStyle = (a, b) => (a.id && a.id === b.id) || (a.key && a.key === b.key);

// Add styles to the chosen list: one already chosen is not added again; beyond the limit the
// ones left out are named.
function add(styles) {
  const fresh = styles.filter((s, i) => !state.styles.some((c) => sameStyle(c, s))
                                        && !styles.slice(0, i).some((o) => sameStyle(o, s)));
  const room = Math.max(0, state.limits.max_styles - state.styles.length);
  const taken = fresh.slice(0, room).map((x) => ({ weight: 1, ...x })), dropped = fresh.slice(room);
  update((s) => { s.styles.push(...taken); s.outdated = !!s.result; });
  if (dropped.length) {
    note("styles", `At most ${state.limits.max_styles} styles per image: ${listed(dropped.map((d) => d.name))} ` +
                   `${dropped.length > 1 ? "were" : "was"} not added.`, true);
  }
  return taken;
}

export function toggle(style) {
  const i = state.styles.findIndex((c) => c.id === style.id);
  if (i >= 0) remove(i);
  else { note("styles", ""); add([style]); }
}

export function remove(i) {
  update((s) => { s.styles.splice(i, 1); s.outdated = !!s.result; });
  note("styles", "");
}

export function setWeight(i, weight) {
  update((s) => { s.styles[i].weight = weight; });
}

export async function addFiles(files) {
  const problems = [], good = [];
  for (const file of files) {
    try {
      const checked = await inspect(file, "the style image", false);
      good.push({ file, key: fileKey(file), name: file.name, thumb: checked.url || "favicon.svg" });
    } catch (e) {
      problems.push(e.message);
    }
  }
  note("styles", problems.join(" "), problems.length > 0); // said once, gone after the next good add
  for (const style of add(good)) style.registering = register(style);
}

// Register an upload once, so that updates and streams send its id, not the image again.
async function register(style) {
  const form = new FormData();
  form.append("style", style.file);
  form.append("name", style.name.slice(0, 100));
  // kept for a while, not for good: the page's uploads never fill the server's store
  if (state.limits.page_style_ttl) form.append("ttl", String(state.limits.page_style_ttl));
  try {
    const r = await call("styles", { method: "POST", body: form });
    if (!r.ok) return;
    const { id } = await r.json();
    update((s) => { for (const c of s.styles) if (c.key === style.key) c.id = id; });
    await loadStyles();
  } catch { /* the file is sent with each request instead */ }
}

export const registrations = () => Promise.all(state.styles.map((s) => s.registering));

export async function deleteMine(style) {
  const r = await call(`styles/${encodeURIComponent(style.id)}`, { method: "DELETE" });
  if (r.ok || r.status === 404) {
    update((s) => { s.styles = s.styles.filter((c) => c.id !== style.id); });
    await loadStyles();
  }
}

// A style the page knows only by id (a history entry): its picture from the lists, or the server.
export async function pictureOf(id) {
  const known = [...state.presets, ...state.mine].find((s) => s.id === id);
  if (known) return known.thumb;
  return (await authedPicture(`styles/${encodeURIComponent(id)}/thumbnail`)) || "favicon.svg";
}

// A style registered earlier (not a preset, no file in this tab): the server keeps only its code.
export const codeOnly = () => state.styles.some((s) => !s.file && !s.preset);
