// The shell: who is signed in, which screen the address names (#/..., so the relay serves one
// file for every screen), the language switch and the live feed. Screens live in views/ and
// each returns a function that stops its timers and subscriptions when the page changes.

import { get, del, onSessionLost, setCsrfToken } from "./api.js";
import { h, put } from "./dom.js";
import { initLanguage, language, onLanguageChange, setLanguage, t, translateStatic } from "./i18n.js";
import { LiveFeed } from "./live.js";
import { clearFlash, flashError } from "./ui.js";
import { agentView } from "./views/agent.js";
import { apiKeysView } from "./views/api-keys.js";
import { auditView } from "./views/audit.js";
import { newAgentView } from "./views/new-agent.js";
import { overviewView } from "./views/overview.js";
import { signInView } from "./views/signin.js";

const ROUTES = [
  { pattern: /^#?\/?$/, view: overviewView, nav: "nav.overview" },
  { pattern: /^#\/agents\/([^/]+)$/, view: agentView },
  { pattern: /^#\/new-agent$/, view: newAgentView, nav: "nav.new_agent", admin: true },
  { pattern: /^#\/api-keys$/, view: apiKeysView, nav: "nav.api_keys" },
  { pattern: /^#\/audit$/, view: auditView, nav: "nav.audit" },
];
const NAV_HREF = { "nav.overview": "#/", "nav.new_agent": "#/new-agent", "nav.api_keys": "#/api-keys", "nav.audit": "#/audit" };

const main = document.getElementById("main");
const session = { operator: null };
let cleanup = () => {};
let signInNotice = null;

const live = new LiveFeed((status) => {
  const badge = document.getElementById("live");
  badge.dataset.status = status;
  badge.textContent = t(`live.${status}`);
});

function isAdmin() {
  return session.operator?.role === "admin";
}

function startSession(answer) {
  session.operator = answer.operator;
  setCsrfToken(answer.csrf_token);
  signInNotice = null;
  live.start();
}

function endSession(notice) {
  session.operator = null;
  setCsrfToken(null);
  live.stop();
  signInNotice = notice;
}

function renderChrome() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const signOut = document.getElementById("signout");
  const liveBadge = document.getElementById("live");
  const signedIn = session.operator !== null;
  nav.hidden = !signedIn;
  signOut.hidden = !signedIn;
  liveBadge.hidden = !signedIn;
  if (!signedIn) {
    who.textContent = "";
    nav.replaceChildren();
    return;
  }
  const { username, role } = session.operator;
  put(who, h("span", { class: "visually-hidden", text: t("who.signed_in_as") }), `${username} (${t(`role.${role}`)})`);
  const current = location.hash || "#/";
  put(
    nav,
    h(
      "ul",
      {},
      ROUTES.filter((route) => route.nav && (!route.admin || isAdmin())).map((route) => {
        const href = NAV_HREF[route.nav];
        return h("li", {}, h("a", { href, "aria-current": href === current ? "page" : null, text: t(route.nav) }));
      }),
    ),
  );
  liveBadge.textContent = t(`live.${liveBadge.dataset.status || "connecting"}`);
}

function route() {
  const hash = location.hash || "#/";
  for (const candidate of ROUTES) {
    const match = hash.match(candidate.pattern);
    if (match && (!candidate.admin || isAdmin())) return { view: candidate.view, params: match.slice(1).map(decodeURIComponent) };
  }
  return { view: overviewView, params: [] };
}

/** Show the screen the address names; `focus` moves keyboard focus to it (a navigation). */
function render({ focus = false } = {}) {
  cleanup();
  cleanup = () => {};
  renderChrome();
  main.replaceChildren();
  const ctx = { session, isAdmin: isAdmin(), live, rerender: () => render() };
  if (session.operator === null) {
    signInView(main, {
      notice: signInNotice,
      signedIn: (answer) => {
        startSession(answer);
        render({ focus: true });
      },
    });
  } else {
    const { view, params } = route();
    // A screen with timers or subscriptions returns the function that stops them.
    cleanup = view(main, ctx, ...params) || (() => {});
  }
  if (focus && !main.contains(document.activeElement)) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }
}

onSessionLost((error) => {
  if (session.operator === null) return;
  endSession(error.code === "session_expired" ? "signin.expired" : "signin.required");
  render({ focus: true });
});

async function signOut() {
  try {
    await del("/v1/admin/session");
  } catch (error) {
    if (error.status !== 401) {
      flashError(error);
      return;
    }
  }
  endSession("signin.signed_out");
  location.hash = "#/";
  render({ focus: true });
}

async function boot() {
  initLanguage();
  translateStatic();
  const select = document.getElementById("lang");
  select.value = language();
  select.addEventListener("change", () => setLanguage(select.value));
  onLanguageChange(() => render());
  document.getElementById("signout").addEventListener("click", signOut);
  // The address's hash names the screen, so the skip link moves focus instead of navigating.
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", () => {
    clearFlash();
    render({ focus: true });
  });
  try {
    startSession(await get("/v1/admin/session"));
  } catch (error) {
    if (error.status !== 401) flashError(error);
  }
  render();
}

boot();
