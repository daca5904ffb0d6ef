// What a file's digital signatures say, as one line of text: the badge shown by the
// document viewer and next to attachments in the chat. `signatures` is the file's
// `signatures` list from GET /api/v1/files/{id}/meta (empty: no badge).

import { t } from "./i18n.js";

/** {text, valid} for the signatures of a file, or null when it carries none. */
export function signatureBadge(signatures) {
  if (!signatures || !signatures.length) return null;
  const signers = signatures.map((s) => s.signer_common_name || s.signer).join(", ");
  const valid = signatures.every((s) => s.valid);
  if (!valid) {
    const reasons = [...new Set(signatures.flatMap((s) => s.problems || []))]
      .map((p) => t(`sig_problem_${p}`)).join("; ");
    return { valid, text: t("sig_invalid", { signers, reasons }) };
  }
  const text = t("sig_valid", { signers });
  const annotated = signatures.some((s) => s.changes_after_signing === "annotations");
  return { valid, text: annotated ? `${text} (${t("sig_annotations_added")})` : text };
}

/** Style an element as the badge (no stylesheet change needed). */
export function paintBadge(el, badge) {
  el.hidden = !badge;
  if (!badge) return;
  el.textContent = badge.text;
  el.dataset.valid = String(badge.valid);
  el.style.cssText = "margin:0 0 4px;padding:2px 8px;border-radius:6px;font-weight:600;" +
    (badge.valid ? "background:#e3f4e6;color:#1b5e20;" : "background:#fdecea;color:#b71c1c;");
}
