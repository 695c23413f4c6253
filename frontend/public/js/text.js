// Numbers and names as people read them.
import { state } from "./store.js";

export const megapixels = (n) => `${(n / 1e6).toFixed(1)} megapixels`;
export const megabytes = (n) => (n < 2 ** 20 ? `${Math.ceil(n / 1024)} KB` : `${(n / 2 ** 20).toFixed(1)} MB`);
export const stem = (name) => name.replace(/\.[^.]*$/, "").replace(/[^\w-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);

export function seconds(s) { // 89 s, 1 min 30 s; rounded once, so never "7 min 60 s"
  const t = Math.round(s);
  return t >= 90 ? `${Math.floor(t / 60)} min ${t % 60} s` : `${t} s`;
}

// frames/s when at least one a second, else seconds per frame ("0.1 frames/s" reads as nothing)
export function rate(fps) {
  return fps >= 1 ? `${fps.toFixed(1)} frames/s` : `${(1 / fps).toFixed(1)} s per frame`;
}

// "a, b and c"
export function listed(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

export function formatList() {
  const f = state.limits.input_formats;
  return `${f.slice(0, -1).join(", ")} or ${f[f.length - 1]}`;
}

// The server's sentences, for people: no setting names, big numbers grouped.
export function friendly(detail) {
  return String(detail)
    .replace(/\s*\(ADAIN_[A-Z_]+\)/g, "")
    .replace(/\b\d{5,}\b/g, (n) => Number(n).toLocaleString("en"));
}

export const EXTENSIONS = { png: "png", jpeg: "jpg", webp: "webp" };

// photo-in-style1+style2.png
export function downloadName(photoName, styles, format) {
  const names = styles.map((s) => stem(s.name)).filter(Boolean).slice(0, 3).join("+") || "style";
  return `${stem(photoName) || "photo"}-in-${names}.${EXTENSIONS[format] || format}`;
}

// A result's caption, on the page and in the history: what it was made of and with.
export const resultCaption = (photoName, styles, options, w, h, version) =>
  `${photoName} · ${styleNames(styles)} · α ${Number(options.alpha).toFixed(2)} · ${w}×${h}` +
  (options.matching === "efdm" ? " · EFDM" : "") + (version ? ` · decoder ${version}` : "");

function styleNames(styles) {
  return styles.map((s) => s.name).slice(0, 3).join(" + ") + (styles.length > 3 ? " …" : "");
}
