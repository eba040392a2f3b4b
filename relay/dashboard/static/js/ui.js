// Pieces every screen uses: the flash line, the live announcer, the confirm dialog, tables that
// turn into cards on a phone, state badges, and the box that shows a new secret once.

import { del } from "./api.js";
import { h, put } from "./dom.js";
import { formatDateTime, formatRelative, t } from "./i18n.js";

/** The text to show for a failed request: the problem's `detail`, or why nothing came back. */
export function errorText(error) {
  if (error && error.code === "network") return t("error.network");
  return (error && error.message) || t("error.unknown");
}

export function flash(message, kind = "error") {
  const box = document.getElementById("flash");
  box.className = `flash flash-${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  put(box, h("span", { text: message }), h("button", {
    type: "button",
    class: "link-button",
    "aria-label": t("action.dismiss"),
    onclick: clearFlash,
    text: "×",
  }));
  box.hidden = false;
}

export function clearFlash() {
  const box = document.getElementById("flash");
  box.hidden = true;
  box.replaceChildren();
}

export function flashError(error) {
  flash(errorText(error), "error");
}

/** Say something to screen-reader users without moving their focus (live updates). */
export function announce(message) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  // A fresh text node after clearing makes screen readers read a repeated message again.
  requestAnimationFrame(() => {
    region.textContent = message;
  });
}

/** A modal yes/no question; resolves true when confirmed. */
export function confirmAction(question, confirmLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = question;
  document.getElementById("confirm-ok").textContent = confirmLabel;
  document.getElementById("confirm-cancel").textContent = t("action.cancel");
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/**
 * A table that scrolls on a laptop and becomes one card per row on a phone: each cell carries
 * its column's name (data-label) for the CSS to show. `columns` are [label, render(row)] pairs;
 * render returns text or nodes.
 */
export function table(columns, rows, { caption, empty, rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "empty", text: empty || t("table.empty") });
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "rtable" },
      caption ? h("caption", { class: "visually-hidden", text: caption }) : null,
      h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col", text: label })))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            rowAttrs ? rowAttrs(row) : {},
            columns.map(([label, render]) => h("td", { "data-label": label }, render(row))),
          ),
        ),
      ),
    ),
  );
}

/** The agent's state in colour and in words, never colour alone. */
export function stateBadge(state, reason) {
  const text = t(`state.${state}`);
  const detail = reason ? t(`reason.${reason}`) : null;
  return h(
    "span",
    { class: `badge state-${state}`, dataset: { state } },
    h("span", { class: "dot", "aria-hidden": "true" }),
    detail ? `${text} (${detail})` : text,
  );
}

/** A section with a heading, whose body can be replaced while the heading stays. */
export function section(title, id, ...extra) {
  const body = h("div", { class: "section-body" });
  const el = h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id, text: title }), ...extra, body);
  return { el, body };
}

/**
 * A secret (agent token, API key) shown once: read-only field, copy button, and a plain
 * warning that it will not be shown again.
 */
export function secretBox(title, secret) {
  const field = h("input", {
    id: "secret-value",
    class: "secret",
    type: "text",
    readonly: true,
    value: secret,
    spellcheck: "false",
    autocomplete: "off",
  });
  const copied = h("span", { class: "copied", role: "status" });
  const copy = h("button", {
    type: "button",
    id: "copy-secret",
    text: t("secret.copy"),
    onclick: async () => {
      field.select();
      try {
        await navigator.clipboard.writeText(secret);
        copied.textContent = t("secret.copied");
      } catch {
        copied.textContent = t("secret.copy_manually");
      }
    },
  });
  const box = h(
    "div",
    { class: "secret-box", role: "region", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title", text: title }),
    h("p", { class: "warning", text: t("secret.once") }),
    h("label", { for: "secret-value", class: "visually-hidden", text: title }),
    h("div", { class: "secret-row" }, field, copy),
    copied,
  );
  return box;
}

/** A button that disables itself while its action runs and reports the action's error. */
export function actionButton(label, action, { danger = false, attrs = {} } = {}) {
  const button = h("button", { type: "button", class: danger ? "danger" : null, text: label, ...attrs });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      flashError(error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/**
 * The actions column of a list of credentials (tokens, API keys): nothing once revoked, else a
 * Revoke button that asks `question(row)`, sends DELETE `path(row)`, says `done(row)` and
 * awaits `after()` (a refresh).
 */
export function revokeColumn({ question, path, done, after, attrs = () => ({}) }) {
  return [
    t("col.actions"),
    (row) =>
      row.revoked_at
        ? "–"
        : actionButton(
            t("action.revoke"),
            async () => {
              if (!(await confirmAction(question(row), t("action.revoke")))) return;
              await del(path(row));
              flash(done(row), "success");
              await after();
            },
            { danger: true, attrs: attrs(row) },
          ),
  ];
}

/** A cell with a relative time and the exact one on hover and for screen readers. */
export function timeCell(iso) {
  if (!iso) return "–";
  return h("time", { datetime: iso, title: formatDateTime(iso) }, formatRelative(iso));
}
