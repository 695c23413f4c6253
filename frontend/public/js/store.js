// The page's one state and its one render. Actions change `state` inside `update`; then every
// view registered with `view` draws its part of the page from the state alone (once per turn of
// the event loop, however many updates came). Nothing else writes to the DOM's moving parts, so
// no part of the page can show an older truth than another.

const OPTIONS = { alpha: 1, colorMatch: 0.5, matching: "adain", preserve: false, size: "512", format: "png", decoder: "",
                         videoSize: "0", videoSteady: true, liveSize: "256", liveSteady: true };

export const state = {
  limits: {
    // the server's defaults (service/settings.py) until GET /limits answers
    max_file_bytes: 20 * 2 ** 20, max_image_pixels: 8192 * 8192, max_output_pixels: 8192 * 8192, max_styles: 8,
    max_video_bytes: 200 * 2 ** 20, max_video_seconds: 300, max_video_pixels: 1920 * 1080,
    mask_aspect_tolerance: 0.02, seconds_per_megapixel: 0, api_key_required: false,
    input_formats: ["PNG", "JPEG", "WebP", "GIF", "BMP", "TIFF", "HEIC", "HEIF", "AVIF"],
    input_accept: ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff", "image/heic",
                   "image/heif", "image/avif", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                   ".heic", ".heif", ".avif"],
  },
  mode: "photo",        // the tab: "photo", "video" or "live"
  photo: null,          // { file, name, w, h, url, key }: url is a picture the browser can draw
  mask: null,           // the same, for the mask
  video: null,          // { file, name, w, h, seconds }: what the browser could read of the clip
  styles: [],           // { id?, name, thumb, weight, preset, file?, registering? } in the order sent
  options: { ...OPTIONS },
  job: null,            // the one thing running: { kind: "photo" | "video" | "live", label, stop, ... }
  pendingUpdate: false, // a photo update asked for while another job ran: it runs when that ends
  result: null,         // the photo result on screen: { url, blob, w, h, format, ms, name, caption, made, ... }
  outdated: false,      // the result no longer shows the inputs
  videoResult: null,    // { src, name, text }
  live: null,           // { url, stats } of the stream's last answer
  status: { text: "", kind: "" },
  notes: {},            // a sentence under a field: { content, styles, mask, video } -> { text, error }
  models: null,         // GET /models: { default, versions: [{ name, card }] }
  presets: [],          // from GET /styles
  mine: [],             // this tenant's registered styles
  history: [],          // newest first
  shownHistory: null,   // the history entry on screen
  keyNeeded: false,
};

const views = [];
let queued = false;

export function view(draw) {
  views.push(draw);
}

export function update(change) {
  if (change) change(state);
  if (queued) return;
  queued = true;
  queueMicrotask(() => {
    queued = false;
    for (const draw of views) draw(state);
  });
}

export function say(text, kind = "") {
  update((s) => { s.status = { text, kind }; });
}

export function note(field, text, error = false) {
  update((s) => { s.notes[field] = { text, error }; });
}
