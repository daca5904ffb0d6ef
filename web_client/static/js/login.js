// The login page: sign in, keep the token, then go where the user was going (or offer the
// applications that fit the user's roles).

import { changePassword } from "./account.js";
import "./admin-i18n.js";
import { api, ApiError, session } from "./api.js";
import { errorMessage, t } from "./i18n.js";
import { fill, h, startPage } from "./shell.js";

const APPS = [
  { path: "/app/delegate/", key: "app_delegate", roles: ["delegate", "chair"] },
  { path: "/app/chair/", key: "app_chair", roles: ["chair", "secretary"] },
  { path: "/app/projector/", key: "app_projector", roles: ["chair", "secretary"] },
  { path: "/app/chat/", key: "app_chat", roles: ["standing", "staff", "admin", "chair", "secretary", "delegate"] },
  { path: "/app/prepare/", key: "app_prepare", roles: ["chair", "secretary"] },
  { path: "/app/admin/", key: "app_admin", roles: ["admin"] },
  { path: "/app/admin/#audit", key: "app_audit", roles: ["auditor"] },
];

function nextUrl() {
  const next = new URLSearchParams(location.search).get("next");
  // Only paths inside this application: never an outside address.
  return next && next.startsWith("/app/") && !next.startsWith("//") ? next : null;
}

function appsFor(user) {
  const roles = user.roles || [];
  const fitting = APPS.filter((app) => app.roles.some((r) => roles.includes(r)));
  return fitting.length ? fitting : APPS.filter((app) => app.path === "/app/chat/");
}

function renderApps() {
  const user = session.user;
  document.getElementById("login-panel").classList.add("hidden");
  document.getElementById("apps-panel").classList.remove("hidden");
  document.getElementById("signed-in").textContent = t("signed_in_as", { name: user.display_name });
  fill(document.getElementById("app-links"),
    appsFor(user).map((app) => h("li", {}, h("a", { class: "btn", href: app.path }, t(app.key)))));
}

function render() {
  startPage("login_title", { requireUser: false });
  document.getElementById("conn-status")?.remove();
  if (session.token && session.user) renderApps();
}

// Keep the session of a sign-in and go on to where the user was going.
async function signedIn(answer) {
  session.save(answer.access_token, answer.user);
  // After an administrator's reset, a new password comes before anything else.
  if (answer.must_change_password && !(await changePassword({ forced: true }))) {
    session.clear();
    return;
  }
  const next = nextUrl();
  if (next) {
    location.replace(next);
    return;
  }
  const apps = appsFor(answer.user);
  if (apps.length === 1) location.replace(apps[0].path);
  else render();
}

// The SSO button, when the server has a provider configured.
async function offerSso() {
  try {
    const status = await api("auth/oidc");
    const next = nextUrl();
    // After the provider, the page the user was going to.
    document.getElementById("sso-button").href =
      `/api/v1/auth/oidc/start${next ? `?next=${encodeURIComponent(next)}` : ""}`;
    document.getElementById("sso-box").classList.toggle("hidden", !status.enabled);
  } catch {
    // Without an answer the password form alone is offered.
  }
}

// Back from the provider: a one-time code to exchange, or why the sign-in was refused.
async function finishSso() {
  const params = new URLSearchParams(location.hash.slice(1));
  const code = params.get("sso");
  const refused = params.get("sso_error");
  if (!code && !refused) return;
  history.replaceState(null, "", location.pathname + location.search);
  const error = document.getElementById("login-error");
  if (refused) {
    error.textContent = errorMessage(refused);
    return;
  }
  try {
    await signedIn(await api("auth/oidc/exchange", { method: "POST", body: { code } }));
  } catch (err) {
    error.textContent = err instanceof ApiError ? err.message : t("error_generic", { message: err.message });
  }
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById("login-error");
  error.textContent = "";
  const button = document.getElementById("login-submit");
  button.disabled = true;
  try {
    await signedIn(await api("auth/login", {
      method: "POST",
      body: { username: form.username.value.trim(), password: form.password.value },
    }));
  } catch (err) {
    error.textContent = err instanceof ApiError && (err.status === 401 || err.status === 400)
      ? t("login_failed") : t("error_generic", { message: err.message });
    form.password.select();
  } finally {
    button.disabled = false;
  }
});

window.addEventListener("langchange", render);
render();
offerSso();
finishSso();
