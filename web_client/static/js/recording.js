// One recording of a remote sitting, for a signed-in participant: the address the minutes
// print (/app/recording/#meeting/M/R). The audio is fetched with the token and played from
// a blob (the API path itself needs the token, so a bare link would answer 401).

import { api, blobUrl, download } from "./api.js";
import { formatTime, t } from "./i18n.js";
import { clockText, fill, h, showError, startPage } from "./shell.js";

startPage("recordings");

async function show() {
  const main = document.getElementById("main");
  const match = location.hash.match(/^#meeting\/(\d+)\/(\d+)/);
  if (!match) {
    fill(main, h("p", { class: "muted" }, t("recordings_none")));
    return;
  }
  const [meetingId, recordingId] = [Number(match[1]), Number(match[2])];
  try {
    const listed = (await api(`meetings/${meetingId}/recordings`)).recordings || [];
    const index = listed.findIndex((r) => r.id === recordingId);
    const recording = listed[index];
    if (!recording) {
      fill(main, h("p", { role: "alert" }, t("recordings_none")));
      return;
    }
    const duration = recording.ended_at ? clockText(recording.duration_secs || 0) : t("recording_in_progress");
    const title = t("recording_item", { n: index + 1, start: formatTime(recording.started_at), duration });
    const player = h("audio", { controls: true, id: "recording-audio", preload: "metadata" });
    const name = `phien-hop-${meetingId}-ban-ghi-${recordingId}.ogg`;
    fill(main, h("section", { class: "panel" }, h("h2", {}, title), player,
      h("p", {}, h("button", { type: "button", class: "btn", id: "recording-download", onclick: () => download(recording.url, name).catch(showError) }, "⤓ ", name))));
    if (recording.ended_at) player.src = await blobUrl(recording.url);
  } catch (err) {
    showError(err);
  }
}

window.addEventListener("hashchange", show);
window.addEventListener("langchange", () => {
  startPage("recordings");
  show();
});
show();
