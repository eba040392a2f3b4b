// API keys: everyone signed in sees the list; admins create keys (grants, admin flag; the key
// is shown once) and revoke them.

import { get, post, seg } from "../api.js";
import { h, put } from "../dom.js";
import { formatDateTime, t } from "../i18n.js";
import { flashError, revokeColumn, secretBox, table, timeCell } from "../ui.js";
import { adminForm, field } from "./form.js";

/** "a, b" → ["a", "b"]; empty → ["*"] (everything), as the CLI does. */
function list(text) {
  const items = text.split(",").map((item) => item.trim()).filter(Boolean);
  return items.length ? items : ["*"];
}

export function apiKeysView(main, ctx) {
  const result = h("div", { class: "secret-slot" });
  const body = h("div");
  main.append(h("h1", { text: t("keys.title") }), result);

  async function load() {
    let answer;
    try {
      answer = await get("/v1/admin/api-keys");
    } catch (error) {
      if (error.status !== 401) flashError(error);
      return;
    }
    const columns = [
      [t("col.key"), (k) => h("code", { text: k.public_id })],
      [t("col.name"), (k) => k.name],
      [t("col.agents"), (k) => (k.agents || []).join(", ") || "–"],
      [t("col.operations"), (k) => (k.operations || []).join(", ") || "–"],
      [t("col.admin"), (k) => (k.admin ? t("common.yes") : t("common.no"))],
      [t("col.created"), (k) => formatDateTime(k.created_at)],
      [t("col.last_used"), (k) => timeCell(k.last_used_at)],
      [t("col.revoked"), (k) => (k.revoked_at ? formatDateTime(k.revoked_at) : t("token.active"))],
    ];
    if (ctx.isAdmin) {
      columns.push(
        revokeColumn({
          question: (k) => t("confirm.revoke_key", { key: k.public_id, name: k.name }),
          path: (k) => `/v1/admin/api-keys/${seg(k.public_id)}`,
          done: (k) => t("done.key_revoked", { key: k.public_id }),
          after: load,
        }),
      );
    }
    put(body, table(columns, answer.api_keys, { caption: t("keys.title"), empty: t("keys.empty") }));
  }

  if (ctx.isAdmin) {
    const name = h("input", { name: "name", required: true, maxlength: 100, autocomplete: "off" });
    const agents = h("input", { name: "agents", value: "*", autocomplete: "off" });
    const operations = h("input", { name: "operations", value: "*", autocomplete: "off" });
    const admin = h("input", { id: "key-admin", name: "admin", type: "checkbox" });
    main.append(
      adminForm(
        t("keys.create"),
        [
          field("key-name", t("keys.name"), name),
          field("key-agents", t("keys.agents"), agents, t("keys.list_hint")),
          field("key-operations", t("keys.operations"), operations, t("keys.list_hint")),
          h("div", { class: "field checkbox" }, admin, h("label", { for: "key-admin", text: t("keys.admin") })),
        ],
        t("action.create_key"),
        async () => {
          const answer = await post("/v1/admin/api-keys", {
            name: name.value.trim(),
            agents: list(agents.value),
            operations: list(operations.value),
            admin: admin.checked,
          });
          put(result, secretBox(t("keys.created", { key: answer.public_id }), answer.key));
          result.querySelector("input")?.focus();
          await load();
        },
      ),
    );
  }
  main.append(h("section", { class: "panel", "aria-labelledby": "keys-list" }, h("h2", { id: "keys-list", text: t("keys.list") }), body));
  load();
}
