// How a remote participant is marked wherever people are listed (attendance, the speakers'
// queue, the projector): "Trực tuyến" with the connection quality the server measured.

import { t } from "./i18n.js";
import { h } from "./shell.js";
import { participant } from "./meeting-state.js";

/** The marker of a participant attending remotely, or null for one in the hall. */
export function remoteTag(state, userId) {
  const p = participant(state, userId);
  if (!p || p.mode !== "remote" || !p.present) return null;
  const connection = p.media?.connection || "lost";
  const text = t("remote_tag_quality", { quality: t(`connection_${connection}`) });
  return h("span", { class: `tag remote-tag remote-${connection}`, dataset: { remote: connection }, title: text }, "⌁ ", text);
}
