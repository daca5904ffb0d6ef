// The user's own menu on every page: change one's password. A page includes this module
// with one <script type="module"> line; the button joins the page's header once the page
// has drawn it.

import { api, session } from "./api.js";
import "./admin-i18n.js";
import { t } from "./i18n.js";
import { h, toast } from "./shell.js";

/**
 * Ask for the current and a new password and change it. Resolves true when changed.
 * `forced`: after an administrator's reset, explained at the top.
 */
export function changePassword({ forced = false } = {}) {
  return new Promise((resolve) => {
    const error = h("p", { class: "error-text", role: "alert", id: "account-error" });
    const input = (name, key, autocomplete) => h("div", { class: "field" },
      h("label", { for: `account-${name}` }, t(key)),
      h("input", { type: "password", id: `account-${name}`, name, required: true, autocomplete }));
    const form = h("form", { class: "dialog-form account-form", id: "account-form" },
      h("h2", {}, t("account_menu")),
      forced ? h("p", { class: "muted" }, t("account_must_change")) : null,
      input("current", "account_current", "current-password"),
      input("new", "account_new", "new-password"),
      input("repeat", "account_repeat", "new-password"),
      h("p", { class: "muted small" }, t("admin_password_hint")),
      error,
      h("div", { class: "row end" },
        h("button", { type: "button", class: "btn", onclick: () => dlg.close() }, t("cancel")),
        h("button", { type: "submit", class: "btn btn-primary", id: "account-submit" }, t("save"))));
    const dlg = h("dialog", { class: "modal", "aria-labelledby": "account-title" }, form);
    let changed = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = Object.fromEntries(new FormData(form).entries());
      if (values.new !== values.repeat) {
        error.textContent = t("account_mismatch");
        return;
      }
      // Every session of the user ends, this page's socket too: the page must not take
      // that for a sign-out (see shell.js), and reconnects with the new token.
      sessionStorage.setItem("dh.password-change", "1");
      try {
        const answer = await api("me/password", {
          method: "POST", body: { current_password: values.current, new_password: values.new },
        });
        session.save(answer.access_token, answer.user);
        changed = true;
        sessionStorage.setItem("dh.password-changed", "1");
        dlg.close();
        // The flag stays until the next page has loaded: the old socket's 4401 may still
        // arrive before this page is gone.
        if (!forced) location.reload();
        else sessionStorage.removeItem("dh.password-change");
      } catch (err) {
        sessionStorage.removeItem("dh.password-change");
        error.textContent = err.message;
      }
    });
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(changed);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

function addMenu() {
  const tools = document.querySelector("#app-header .header-tools");
  if (!tools || !session.token || document.getElementById("account-menu")) return;
  const button = h("button", { type: "button", class: "btn btn-ghost", id: "account-menu",
    onclick: () => changePassword() }, t("account_menu"));
  const logout = document.getElementById("logout");
  if (logout) logout.before(button);
  else tools.append(button);
}

// Said after the reload that follows a change.
sessionStorage.removeItem("dh.password-change");
if (sessionStorage.getItem("dh.password-changed")) {
  sessionStorage.removeItem("dh.password-changed");
  setTimeout(() => toast(t("account_changed")), 0);
}

// The header is redrawn on a language switch; the button follows it.
const header = document.getElementById("app-header");
if (header) new MutationObserver(addMenu).observe(header, { childList: true, subtree: true });
addMenu();
