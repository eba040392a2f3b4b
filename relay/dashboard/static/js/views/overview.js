// Every agent at a glance. Refetched on each agent event from the live feed (an agent that
// connects shows within a second or two) and every few seconds for its rates; a change of
// state is also announced to screen readers.

import { get, seg } from "../api.js";
import { h, put } from "../dom.js";
import { formatDateTime, formatMs, formatNumber, formatPercent, t } from "../i18n.js";
import { announce, flashError, stateBadge, table, timeCell } from "../ui.js";
import { Refresher } from "./refresh.js";

const STATES = ["online", "degraded", "offline", "revoked"];

function summary(agents) {
  const counts = Object.fromEntries(STATES.map((state) => [state, 0]));
  for (const agent of agents) counts[agent.state] = (counts[agent.state] || 0) + 1;
  return h(
    "ul",
    { class: "summary", "aria-label": t("overview.summary") },
    STATES.map((state) =>
      h("li", { class: `badge state-${state}` }, h("span", { class: "dot", "aria-hidden": "true" }), `${t(`state.${state}`)}: ${formatNumber(counts[state])}`),
    ),
  );
}

function agentsTable(agents) {
  return table(
    [
      [t("col.agent"), (a) => h("a", { href: `#/agents/${seg(a.name)}`, dataset: { focusKey: a.name }, text: a.name })],
      [t("col.state"), (a) => stateBadge(a.state, a.degraded_reason)],
      [t("col.connections"), (a) => formatNumber(a.connections)],
      [t("col.version"), (a) => a.agent_version || "–"],
      [t("col.connector"), (a) => (a.connector ? `${a.connector} · ${a.erp || "–"}` : "–")],
      [t("col.remote_address"), (a) => a.remote_address || "–"],
      [t("col.since"), (a) => (a.state === "online" || a.state === "degraded" ? timeCell(a.connected_since) : timeCell(a.last_seen_at))],
      [t("col.rtt"), (a) => formatMs(a.rtt_ms)],
      [t("col.calls_per_min"), (a) => formatNumber(a.calls_per_min, 1)],
      [t("col.error_rate"), (a) => formatPercent(a.error_rate)],
      [t("col.p50_p99"), (a) => `${formatMs(a.p50_ms)} / ${formatMs(a.p99_ms)}`],
      [t("col.jobs_waiting"), (a) => formatNumber(a.jobs_waiting)],
    ],
    agents,
    {
      caption: t("overview.title"),
      empty: t("overview.empty"),
      rowAttrs: (a) => ({ dataset: { agent: a.name, state: a.state } }),
    },
  );
}

export function overviewView(main, ctx) {
  const body = h("div", { id: "overview" });
  const updated = h("p", { class: "muted" });
  main.append(h("div", { class: "page-head" }, h("h1", { text: t("overview.title") }), updated), body);
  let previous = null;

  async function load() {
    let answer;
    try {
      answer = await get("/v1/admin/overview");
    } catch (error) {
      if (error.status !== 401) flashError(error);
      return;
    }
    const states = new Map(answer.agents.map((a) => [a.name, a.state]));
    if (previous) {
      for (const [name, state] of states) {
        if (previous.get(name) !== state) announce(t("announce.state", { agent: name, state: t(`state.${state}`) }));
      }
    }
    previous = states;
    // Keep keyboard focus on the same agent link across the refresh.
    const focused = document.activeElement?.dataset?.focusKey;
    put(body, summary(answer.agents), agentsTable(answer.agents));
    if (focused) body.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`)?.focus();
    put(updated, t("overview.updated", { time: formatDateTime(answer.generated_at) }));
  }

  const refresher = new Refresher(load, ctx.live, (event) => event.kind.startsWith("agent."));
  return () => refresher.stop();
}
