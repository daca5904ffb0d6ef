// The hall's sound desk: the computer wired to the hall's mixing desk joins the meeting's
// media as the hall source. It sends the hall mix (the audio input chosen here) into the
// floor for as long as it stays connected, and plays the remote speakers (the floor minus
// the hall, so the hall never comes back into itself) into the hall loudspeakers, through
// the output chosen here where the browser can choose one. A meter for each direction.
// It may also send the hall camera, shown when the speaker sends no video.
// Only the meeting's chair or secretary, or an administrator, opens it (the server checks
// the same). /app/desk/#meeting/ID

import { session } from "./api.js";
import { errorMessage, t } from "./i18n.js";
import { fill, h, showError, startPage } from "./shell.js";
import { MeetingSession, participant } from "./meeting-state.js";
import { RemoteAttendance } from "./remote.js";
import { FloorVideo, videoArea } from "./media-video.js";

const me = startPage("desk_title");
// How often the meters are redrawn (ms); timers keep running in a background tab.
const METER_EVERY_MS = 100;
// Errors of the device or the connection (not from the API) and their texts.
const LOCAL_ERRORS = ["mic_denied", "mic_missing", "connection_failed"];
const INPUT_KEY = "dh.desk.input";
const OUTPUT_KEY = "dh.desk.output";
const CAMERA_KEY = "dh.desk.camera";

const audio = h("audio", { id: "desk-audio", autoplay: true });
document.body.append(audio);
let meeting = null;
let desk = null;
let meters = null;

/** WebAudio meters of the hall mix going out and of the remote speakers coming in. */
class Meters {
  constructor() {
    this.ctx = new AudioContext();
    this.input = { stream: null, node: null, analyser: this._analyser() };
    this.output = { stream: null, node: null, analyser: this._analyser() };
    this.timer = setInterval(() => this.draw(), METER_EVERY_MS);
  }

  _analyser() {
    const analyser = this.ctx.createAnalyser();
    analyser.fftSize = 1024;
    return analyser;
  }

  _follow(side, stream) {
    if (side.stream === stream) return;
    side.node?.disconnect();
    side.stream = stream;
    side.node = stream?.getAudioTracks().length ? this.ctx.createMediaStreamSource(stream) : null;
    side.node?.connect(side.analyser);
  }

  /** Peak of the last ~20 ms, 0..1. */
  _level(side) {
    if (!side.node) return 0;
    const samples = new Float32Array(side.analyser.fftSize);
    side.analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const sample of samples) peak = Math.max(peak, Math.abs(sample));
    return Math.min(1, peak);
  }

  draw() {
    this._follow(this.input, desk?.local || null);
    this._follow(this.output, audio.srcObject || null);
    showLevel("desk-in-level", this._level(this.input));
    showLevel("desk-out-level", this._level(this.output));
  }

  close() {
    clearInterval(this.timer);
    this.ctx.close().catch(() => {});
  }
}

function showLevel(id, level) {
  const meter = document.getElementById(id);
  if (!meter) return;
  const percent = Math.round(level * 100);
  meter.setAttribute("aria-valuenow", String(percent));
  meter.dataset.level = level.toFixed(3);
  meter.firstChild.style.width = `${percent}%`;
}

function meter(id, label) {
  return h("div", { class: "stack desk-meter" },
    h("span", { class: "small", id: `${id}-label` }, label),
    h("div", { id, class: "progress", role: "meter", "aria-labelledby": `${id}-label`, "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0, dataset: { level: "0" } },
      h("span", {})));
}

function picker(id, label, onchange) {
  return h("label", { class: "field" }, h("span", {}, label), h("select", { id, onchange }));
}

// --- devices ---------------------------------------------------------------------------------------
async function listDevices() {
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    /* no media devices at all: the pickers stay with their defaults */
  }
  const fillPicker = (id, kind, stored, first) => {
    const select = document.getElementById(id);
    if (!select) return;
    const found = devices.filter((d) => d.kind === kind);
    const wanted = select.value || localStorage.getItem(stored) || "";
    fill(select, first, found.map((d, i) => h("option", { value: d.deviceId }, d.label || t("desk_device", { n: i + 1 }))));
    if ([...select.options].some((o) => o.value === wanted)) select.value = wanted;
  };
  fillPicker("desk-input", "audioinput", INPUT_KEY, h("option", { value: "" }, t("desk_device_default")));
  fillPicker("desk-camera", "videoinput", CAMERA_KEY, h("option", { value: "" }, t("desk_camera_none")));
  const canChoose = typeof audio.setSinkId === "function";
  fillPicker("desk-output", "audiooutput", OUTPUT_KEY, h("option", { value: "" }, t("desk_device_default")));
  const output = document.getElementById("desk-output");
  output.disabled = !canChoose;
  document.getElementById("desk-output-note").classList.toggle("hidden", canChoose);
  if (canChoose) await chooseOutput();
}

async function chooseOutput() {
  const id = document.getElementById("desk-output").value;
  localStorage.setItem(OUTPUT_KEY, id);
  try {
    if (audio.sinkId !== id) await audio.setSinkId(id);
  } catch (err) {
    showError(err);
  }
}

function remember(key, id) {
  localStorage.setItem(key, document.getElementById(id).value);
}

// --- connecting ------------------------------------------------------------------------------------
async function connect() {
  if (!meeting) return;
  if (!desk) {
    desk = new RemoteAttendance(meeting.id, audio);
    desk.addEventListener("change", render);
    new FloorVideo(desk);
  }
  meters ||= new Meters();
  await meters.ctx.resume().catch(() => {});
  const input = document.getElementById("desk-input").value;
  const camera = document.getElementById("desk-camera").value;
  // The hall's mix is already processed by the desk: no echo cancelling, no gain riding.
  const constraints = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  await desk.join({
    kind: "hall",
    audio: input ? { ...constraints, deviceId: { exact: input } } : constraints,
    video: camera ? { deviceId: { exact: camera } } : false,
  });
  // Granted now: the devices have their names.
  if (desk.state !== "error") await listDevices();
}

async function disconnect() {
  await desk?.leave();
  document.getElementById("desk-connect")?.focus();
}

function errorText(code) {
  return LOCAL_ERRORS.includes(code) ? t(`remote_error_${code}`) : errorMessage(code);
}

function floorText(state) {
  const current = state?.speakers?.current;
  return current ? t("desk_floor_speaker", { name: current.display_name }) : t("desk_floor_none");
}

function render() {
  const box = document.getElementById("desk");
  if (!box) return;
  const state = desk?.state || "idle";
  const active = !!desk?.active;
  box.dataset.state = state;
  const status = document.getElementById("desk-status");
  status.dataset.state = state;
  status.textContent = t(`desk_${state}`);
  document.getElementById("desk-floor").textContent = state === "listening" ? floorText(meeting?.state) : "";
  const join = document.getElementById("desk-connect");
  join.classList.toggle("hidden", active);
  join.disabled = meeting?.state?.state === "closed";
  document.getElementById("desk-disconnect").classList.toggle("hidden", !active);
  for (const id of ["desk-input", "desk-camera"]) document.getElementById(id).disabled = active;
  const error = document.getElementById("desk-error");
  error.classList.toggle("hidden", state !== "error");
  error.textContent = state === "error" ? errorText(desk.errorCode) : "";
}

function mayOpen(state) {
  if (session.hasRole("admin")) return true;
  return ["chair", "secretary"].includes(participant(state, me.id)?.role);
}

function renderDesk(state) {
  fill(document.getElementById("main"), h("section", { class: "panel stack", id: "desk", "aria-labelledby": "desk-h" },
    h("div", { class: "row" },
      h("h2", { id: "desk-h", class: "grow" }, state.title),
      h("span", { id: "desk-status", class: "tag", role: "status", "aria-live": "polite" })),
    h("p", { class: "muted" }, t("desk_intro")),
    h("div", { class: "desk-devices" },
      picker("desk-input", t("desk_input"), () => remember(INPUT_KEY, "desk-input")),
      picker("desk-output", t("desk_output"), chooseOutput),
      picker("desk-camera", t("desk_camera"), () => remember(CAMERA_KEY, "desk-camera"))),
    h("p", { id: "desk-output-note", class: "small muted hidden" }, t("desk_output_unsupported")),
    h("div", { class: "desk-meters" }, meter("desk-in-level", t("desk_in_level")), meter("desk-out-level", t("desk_out_level"))),
    h("p", { id: "desk-floor", class: "small", "aria-live": "polite" }),
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn btn-primary", id: "desk-connect", onclick: connect }, t("desk_connect")),
      h("button", { type: "button", class: "btn btn-danger hidden", id: "desk-disconnect", onclick: disconnect }, t("desk_disconnect"))),
    h("p", { id: "desk-error", class: "hidden desk-error", role: "alert" }),
    h("div", { id: "desk-video" }, videoArea())));
  render();
  listDevices();
}

async function start() {
  const id = Number((location.hash.match(/^#meeting\/(\d+)/) || [])[1]);
  if (!id) {
    fill(document.getElementById("main"), h("p", { class: "panel", role: "alert" }, t("desk_no_meeting")));
    return;
  }
  let shown = false;
  meeting = new MeetingSession(id, {
    onChange: (state) => {
      if (!shown) {
        shown = true;
        if (!mayOpen(state)) {
          fill(document.getElementById("main"), h("p", { class: "panel", id: "desk-refused", role: "alert" }, t("desk_not_allowed")));
          return;
        }
        renderDesk(state);
      }
      render();
    },
  });
  await meeting.start();
}

window.addEventListener("hashchange", () => location.reload());
window.addEventListener("pagehide", () => meters?.close());
start().catch(showError);
