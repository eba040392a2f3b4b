// Create an agent (admin): the answer's token is the only copy there will ever be, so it is
// shown with a copy button and a plain warning, and nowhere else.

import { post, seg } from "../api.js";
import { h, put } from "../dom.js";
import { t } from "../i18n.js";
import { secretBox } from "../ui.js";
import { adminForm, field } from "./form.js";

export function newAgentView(main) {
  const result = h("div", { class: "secret-slot" });
  const name = h("input", { name: "name", required: true, maxlength: 64, pattern: "[A-Za-z0-9][A-Za-z0-9._-]*", autocomplete: "off" });
  const form = adminForm(
    t("new_agent.form"),
    [field("agent-name", t("new_agent.name"), name, t("new_agent.name_hint"))],
    t("action.create_agent"),
    async () => {
      const answer = await post("/v1/admin/agents", { name: name.value.trim() });
      put(
        result,
        secretBox(t("new_agent.token", { agent: answer.name }), answer.token),
        h("p", {}, h("a", { href: `#/agents/${seg(answer.name)}`, text: t("new_agent.open", { agent: answer.name }) })),
      );
      result.querySelector("input")?.focus();
    },
  );
  main.append(h("h1", { text: t("new_agent.title") }), h("p", { class: "muted", text: t("new_agent.intro") }), result, form);
}
