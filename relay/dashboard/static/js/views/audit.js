// The audit log of admin actions, newest first, paged with `before`, and the whole log as a
// download (the browser sends the session cookie with a plain link).

import { get, withQuery } from "../api.js";
import { h } from "../dom.js";
import { formatDateTime, t } from "../i18n.js";
import { flashError, table } from "../ui.js";

const PAGE = 100;

function details(entry) {
  if (entry.details === null || entry.details === undefined) return "–";
  return h("code", { class: "small", text: JSON.stringify(entry.details) });
}

export function auditView(main) {
  const rows = [];
  const body = h("div");
  const more = h("button", { type: "button", id: "audit-more", text: t("audit.more"), hidden: true });
  main.append(
    h("h1", { text: t("audit.title") }),
    h(
      "p",
      { class: "toolbar" },
      h("a", { class: "button", href: withQuery("/v1/admin/audit/export", { format: "csv" }), download: "audit.csv", text: t("audit.export_csv") }),
      h("a", { class: "button", href: withQuery("/v1/admin/audit/export", { format: "jsonl" }), download: "audit.jsonl", text: t("audit.export_jsonl") }),
    ),
    body,
    more,
  );

  async function load() {
    const before = rows.length ? rows[rows.length - 1].id : null;
    let answer;
    try {
      answer = await get(withQuery("/v1/admin/audit", { limit: PAGE, before }));
    } catch (error) {
      if (error.status !== 401) flashError(error);
      return;
    }
    rows.push(...answer.entries);
    more.hidden = answer.entries.length < PAGE;
    body.replaceChildren(
      table(
        [
          [t("col.at"), (e) => formatDateTime(e.at)],
          [t("col.actor"), (e) => e.actor],
          [t("col.action"), (e) => h("code", { text: e.action })],
          [t("col.target"), (e) => e.target || "–"],
          [t("col.details"), details],
          [t("col.address"), (e) => e.address || "–"],
          [t("col.request_id"), (e) => h("code", { class: "small", text: e.request_id || "–" })],
        ],
        rows,
        { caption: t("audit.title"), empty: t("audit.empty") },
      ),
    );
  }

  more.addEventListener("click", load);
  load();
}
