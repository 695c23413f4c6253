// An image file checked before it is sent: a format the server reads (/limits' list), within the
// sizes, and a picture to show: the browser's own, or the server's preview of what it cannot
// draw (HEIC, TIFF).
import { serverPreview } from "./api.js";
import { state } from "./store.js";
import { formatList, megabytes, megapixels } from "./text.js";

const HEIF_NAME = /\.(heic|heif)$/i; // phones' photos, often sent with no type at all

const extension = (name) => (name.match(/\.[^.]+$/) || [""])[0].toLowerCase();

export function accepted(file) {
  const accept = state.limits.input_accept;
  return accept.includes(file.type) || accept.includes(extension(file.name));
}

export const fileKey = (file) => `${file.name}:${file.size}:${file.lastModified}`;

async function drawnSize(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const size = [bitmap.width, bitmap.height];
    bitmap.close();
    return size;
  } catch {
    return null;
  }
}

// { file, name, w, h, url, key } or an Error that says what is wrong, naming the file.
// `preview`: ask the server for a picture when the browser cannot draw the file.
export async function inspect(file, what, preview = true) {
  const type = file.type || (HEIF_NAME.test(file.name) ? "image/heic" : "");
  if (!accepted(file)) {
    throw new Error(`Not a format this server reads: ${what} (${file.name}) is ` +
                    `${file.type || "of an unknown type"}. Choose a ${formatList()} image.`);
  }
  if (file.size > state.limits.max_file_bytes) {
    throw new Error(`Too large: ${what} (${file.name}) is ${megabytes(file.size)}; ` +
                    `the largest file accepted is ${megabytes(state.limits.max_file_bytes)}.`);
  }
  const out = { file, name: file.name, w: 0, h: 0, url: null, key: fileKey(file) };
  const size = await drawnSize(file);
  if (size) {
    [out.w, out.h] = size;
    out.url = URL.createObjectURL(file);
  } else if (/^image\/(tiff|x-tiff|heic|heif)/.test(type) || /\.(tiff?|heic|heif)$/i.test(file.name)) {
    const shown = preview ? await serverPreview(file) : null; // an Error when the server says it is none
    if (shown) Object.assign(out, shown);
  } else {
    throw new Error(`Not an image: ${what} (${file.name}) cannot be read as a picture. Choose a ${formatList()} image.`);
  }
  if (out.w * out.h > state.limits.max_image_pixels) {
    throw new Error(`Too large: ${what} (${file.name}) is ${out.w}×${out.h} (${megapixels(out.w * out.h)}); ` +
                    `the largest accepted is ${megapixels(state.limits.max_image_pixels)}.`);
  }
  return out;
}

// What the server would make of the photo at the chosen size: [w, h], or null before it is known.
export function outputSize(photo, side) {
  if (!photo || !photo.w) return null;
  const { w, h } = photo;
  if (Number(side) === 0) return [w, h];
  const scale = Number(side) / Math.min(w, h);
  return [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))];
}
