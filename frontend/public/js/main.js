// adain-service's web page: ES modules, no build step. This module wires the page's controls to
// the actions; the state and its one render are in store.js and view.js.
import { apiKey, loadLimits, loadModels, setApiKey } from "./api.js";
import * as history from "./history.js";
import { stop } from "./jobs.js";
import "./lists.js";
import { liveSettings, toggleLive } from "./live.js";
import { changeFormat, clearMask, later, setMask, setPhoto, stylize, validate } from "./photo.js";
import { say, state, update } from "./store.js";
import { addFiles, loadStyles } from "./styles.js";
import { resume as resumeVideo, setVideo, startVideo } from "./video.js";
import { $ } from "./view.js";

// A drop zone: its button opens the file picker (Enter/Space on the keyboard too), and it takes
// dropped files.
function dropZone(zoneId, buttonId, inputId, take) {
  const zone = $(zoneId), input = $(inputId);
  $(buttonId).addEventListener("click", () => input.click());
  input.addEventListener("change", () => { take([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    take([...e.dataTransfer.files]);
  });
}

dropZone("content-drop", "content-pick", "content-file", (files) => setPhoto(files[0]));
dropZone("style-drop", "style-pick", "style-files", addFiles);
dropZone("mask-drop", "mask-pick", "mask-file", (files) => setMask(files[0]));
dropZone("video-drop", "video-pick", "video-file", (files) => setVideo(files[0]));

// Tabs switch what the form shows; a job keeps running (its Stop stays in view).
const MODES = ["photo", "video", "live"];
const setMode = (mode) => { update((s) => { s.mode = mode; }); say(""); };
for (const mode of MODES) {
  $(`tab-${mode}`).addEventListener("click", () => setMode(mode));
  $(`tab-${mode}`).addEventListener("keydown", (e) => { // arrow keys move between tabs
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const next = MODES[(MODES.indexOf(mode) + (e.key === "ArrowRight" ? 1 : MODES.length - 1)) % MODES.length];
    setMode(next);
    $(`tab-${next}`).focus();
  });
}

// Options: into the state, then an update of the result (or the stream's settings).
const option = (key, value, after = later) => { update((s) => { s.options[key] = value; }); after(); };
$("alpha").addEventListener("input", (e) => option("alpha", Number(e.target.value)));
$("color-match").addEventListener("input", (e) => option("colorMatch", Number(e.target.value)));
$("preserve-color").addEventListener("change", (e) => option("preserve", e.target.checked));
$("matching").addEventListener("change", (e) => option("matching", e.target.value));
$("size").addEventListener("change", (e) => option("size", e.target.value, () => {
  const problem = validate();
  if (problem) say(problem, "error");
  else later();
}));
$("format").addEventListener("change", (e) => changeFormat(e.target.value));
$("decoder").addEventListener("change", (e) => option("decoder", e.target.value));
$("video-size").addEventListener("change", (e) => option("videoSize", e.target.value, () => {}));
$("video-steady").addEventListener("change", (e) => option("videoSteady", e.target.checked, () => {}));
$("live-size").addEventListener("change", (e) => option("liveSize", e.target.value, liveSettings));
$("live-steady").addEventListener("change", (e) => option("liveSteady", e.target.checked, liveSettings));
$("mask-clear").addEventListener("click", clearMask);

$("stylize").addEventListener("click", () => (state.mode === "video" ? startVideo() : stylize(false)));
$("job-stop").addEventListener("click", stop);
$("live-start").addEventListener("click", toggleLive);

$("compare-slider").addEventListener("input", (e) => {
  $("compare").style.setProperty("--pos", `${e.target.value}%`);
  e.target.setAttribute("aria-valuetext", `${e.target.value} % before`);
});
$("full-size").addEventListener("click", () => $("full-dialog").showModal());

// Dragging on the picture moves the before / after line (the slider follows: keyboard users keep it).
function dragCompare(e) {
  if (e.type !== "pointerdown" && !(e.buttons & 1)) return;
  const box = $("compare").getBoundingClientRect();
  const pos = Math.round(Math.min(100, Math.max(0, (100 * (e.clientX - box.left)) / box.width)));
  $("compare-slider").value = String(pos);
  $("compare-slider").dispatchEvent(new Event("input"));
}
$("compare").addEventListener("pointerdown", (e) => { $("compare").setPointerCapture(e.pointerId); dragCompare(e); });
$("compare").addEventListener("pointermove", dragCompare);

// Paste an image (a screenshot, a copied photo): into the styles when the styles area has the
// focus, else as the photo.
document.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
  if (!files.length || state.mode === "video") return;
  e.preventDefault();
  if ($("style-drop").contains(document.activeElement) || $("chosen").contains(document.activeElement)) addFiles(files);
  else setPhoto(files[0]);
});

$("history-clear").addEventListener("click", history.clear);

$("api-key").value = apiKey();
$("api-key").addEventListener("change", () => { setApiKey($("api-key").value.trim()); loadStyles(); });

update();
loadLimits().then(async () => {
  await Promise.all([loadStyles(), loadModels()]);
  resumeVideo();
  await history.resume();
});
