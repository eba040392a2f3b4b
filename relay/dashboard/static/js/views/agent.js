// One agent: its state and figures, live connections (disconnect), tokens (rotate, revoke),
// latency, errors by code, recent calls, jobs (retry, cancel) and connection history. Admin
// buttons are only drawn for admins; the server refuses a viewer's action anyway.

import { del, get, post, seg, withQuery } from "../api.js";
import { chartLegend, latencyChart } from "../chart.js";
import { h, put } from "../dom.js";
import { formatDateTime, formatMs, formatNumber, formatPercent, t } from "../i18n.js";
import {
  actionButton,
  confirmAction,
  flash,
  flashError,
  revokeColumn,
  secretBox,
  section,
  stateBadge,
  table,
  timeCell,
} from "../ui.js";
import { Refresher } from "./refresh.js";

const CHART_MINUTES = 60;
const JOB_STATES = ["pending", "running", "failed", "expired", "succeeded", "cancelled"];

function facts(agent) {
  const rows = [
    [t("col.connections"), formatNumber(agent.connections)],
    [t("col.version"), agent.agent_version || "–"],
    [t("col.connector"), agent.connector ? `${agent.connector} · ${agent.erp || "–"}` : "–"],
    [t("col.remote_address"), agent.remote_address || "–"],
    [t("col.connected_since"), timeCell(agent.connected_since)],
    [t("col.last_seen"), timeCell(agent.last_seen_at)],
    [t("col.rtt"), formatMs(agent.rtt_ms)],
    [t("col.calls_per_min"), formatNumber(agent.calls_per_min, 1)],
    [t("col.error_rate"), formatPercent(agent.error_rate)],
    [t("col.p50_p99"), `${formatMs(agent.p50_ms)} / ${formatMs(agent.p99_ms)}`],
    [t("col.jobs_waiting"), formatNumber(agent.jobs_waiting)],
  ];
  return h("dl", { class: "facts" }, rows.map(([term, value]) => h("div", {}, h("dt", { text: term }), h("dd", {}, value))));
}

function eventDetails(event) {
  const data = event.data || {};
  const parts = [];
  if (data.reason) parts.push(t("history.reason", { reason: data.reason }));
  if (data.remote_address) parts.push(data.remote_address);
  if (data.agent_version) parts.push(`v${data.agent_version}`);
  if (data.replica) parts.push(t("history.replica", { replica: data.replica }));
  if (data.job_id) parts.push(`${data.operation || ""} ${data.job_id} → ${t(`job.${data.state}`)}`);
  return parts.join(" · ") || "–";
}

export function agentView(main, ctx, name) {
  const base = `/v1/admin/agents/${seg(name)}`;
  const title = h("h1", {}, name);
  const badge = h("span", { class: "head-badge" });
  const secret = h("div", { class: "secret-slot" });
  const adminBar = h("div", { class: "toolbar" });
  const status = h("div", { class: "facts-wrap" });
  const links = section(t("agent.links"), "links-title");
  const tokens = section(t("agent.tokens"), "tokens-title");
  const latency = section(t("agent.latency", { minutes: CHART_MINUTES }), "latency-title");
  const errors = section(t("agent.errors", { minutes: CHART_MINUTES }), "errors-title");
  const calls = section(t("agent.calls"), "calls-title");
  const jobState = h("select", { id: "job-state" }, JOB_STATES.map((state) => h("option", { value: state, text: t(`job.${state}`) })));
  const jobs = section(t("agent.jobs"), "jobs-title", h("label", { class: "inline-field" }, h("span", { text: t("agent.job_state") }), jobState));
  const history = section(t("agent.history"), "history-title");

  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/", text: t("nav.overview") })),
    h("div", { class: "page-head" }, title, badge),
    secret,
    adminBar,
    status,
    h("div", { class: "grid" }, links.el, tokens.el),
    latency.el,
    h("div", { class: "grid" }, errors.el, jobs.el),
    calls.el,
    history.el,
  );

  function showSecret(heading, value) {
    put(secret, secretBox(heading, value));
    secret.querySelector("input")?.focus();
  }

  async function rotate() {
    const answer = await post(`${base}/tokens`, { revoke_others: false });
    showSecret(t("agent.new_token", { id: answer.public_id }), answer.token);
    refresher.now();
  }

  async function revokeAgent() {
    if (!(await confirmAction(t("confirm.revoke_agent", { agent: name }), t("action.revoke_agent")))) return;
    await del(base);
    flash(t("done.agent_revoked", { agent: name }), "success");
    refresher.now();
  }

  function renderLinks(agent) {
    const columns = [
      [t("col.session"), (l) => h("code", { text: l.session_id })],
      [t("col.replica"), (l) => l.replica || "–"],
      [t("col.remote_address"), (l) => l.remote_address || "–"],
      [t("col.hostname"), (l) => l.hostname || "–"],
      [t("col.connected_since"), (l) => timeCell(l.connected_since)],
      [t("col.version"), (l) => l.agent_version || "–"],
      [t("col.slot"), (l) => formatNumber(l.slot)],
      [t("col.in_flight"), (l) => formatNumber(l.in_flight)],
      [t("col.rtt"), (l) => formatMs(l.rtt_ms)],
      [t("col.erp"), (l) => (l.erp ? t(`erp.${l.erp}`) : "–")],
    ];
    if (ctx.isAdmin) {
      columns.push([
        t("col.actions"),
        (l) =>
          actionButton(t("action.disconnect"), async () => {
            if (!(await confirmAction(t("confirm.disconnect", { session: l.session_id }), t("action.disconnect")))) return;
            await post(`${base}/links/${seg(l.session_id)}/disconnect`);
            flash(t("done.disconnected"), "success");
            refresher.soon();
          }, { danger: true }),
      ]);
    }
    put(links.body, table(columns, agent.links || [], { caption: t("agent.links"), empty: t("agent.no_links") }));
  }

  function renderTokens(agent) {
    const columns = [
      [t("col.token"), (k) => h("code", { text: k.public_id })],
      [t("col.created"), (k) => timeCell(k.created_at)],
      [t("col.last_used"), (k) => timeCell(k.last_used_at)],
      [t("col.revoked"), (k) => (k.revoked_at ? formatDateTime(k.revoked_at) : t("token.active"))],
    ];
    if (ctx.isAdmin) {
      columns.push(
        revokeColumn({
          question: (k) => t("confirm.revoke_token", { token: k.public_id }),
          path: (k) => `${base}/tokens/${seg(k.public_id)}`,
          done: (k) => t("done.token_revoked", { token: k.public_id }),
          after: () => refresher.now(),
          attrs: (k) => ({ dataset: { token: k.public_id } }),
        }),
      );
    }
    put(tokens.body, table(columns, agent.tokens || [], { caption: t("agent.tokens") }));
  }

  function renderAdminBar(agent) {
    if (!ctx.isAdmin || agent.state === "revoked") {
      adminBar.replaceChildren();
      return;
    }
    if (adminBar.childElementCount) return; // keep the buttons (and their focus) across refreshes
    put(
      adminBar,
      actionButton(t("action.rotate"), rotate, { attrs: { id: "rotate-token" } }),
      actionButton(t("action.revoke_agent"), revokeAgent, { danger: true, attrs: { id: "revoke-agent" } }),
    );
  }

  async function loadStatus() {
    const agent = await get(base);
    put(badge, stateBadge(agent.state, agent.degraded_reason));
    put(status, facts(agent));
    renderAdminBar(agent);
    renderLinks(agent);
    renderTokens(agent);
  }

  async function loadLatency() {
    const answer = await get(withQuery(`${base}/latency`, { minutes: CHART_MINUTES }));
    put(
      latency.body,
      h("figure", {}, latencyChart(answer.points, CHART_MINUTES), h("figcaption", {}, h("ul", { class: "legend" }, chartLegend().map(([cls, text]) => h("li", {}, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text))))),
    );
  }

  async function loadErrors() {
    const answer = await get(withQuery(`${base}/errors`, { minutes: CHART_MINUTES }));
    put(
      errors.body,
      table(
        [
          [t("col.code"), (e) => h("code", { text: e.code })],
          [t("col.count"), (e) => formatNumber(e.count)],
          [t("col.last_at"), (e) => timeCell(e.last_at)],
        ],
        answer.errors,
        { caption: t("agent.errors", { minutes: CHART_MINUTES }), empty: t("agent.no_errors") },
      ),
    );
  }

  async function loadCalls() {
    const answer = await get(withQuery(`${base}/calls`, { limit: 50 }));
    put(
      calls.body,
      table(
        [
          [t("col.at"), (c) => timeCell(c.at)],
          [t("col.operation"), (c) => h("code", { text: c.operation })],
          [t("col.caller"), (c) => c.api_key_name || c.api_key_id || "–"],
          [t("col.status"), (c) => h("span", { class: c.status >= 400 ? "status-bad" : "status-ok" }, c.code ? `${c.status} ${c.code}` : String(c.status))],
          [t("col.duration"), (c) => formatMs(c.duration_ms)],
          [t("col.document"), (c) => c.document || "–"],
          [t("col.request_id"), (c) => h("code", { class: "small", text: c.request_id || "–" })],
        ],
        answer.calls,
        { caption: t("agent.calls"), empty: t("agent.no_calls"), rowAttrs: (c) => ({ dataset: { operation: c.operation } }) },
      ),
    );
  }

  async function loadJobs() {
    const answer = await get(withQuery(`${base}/jobs`, { state: jobState.value, limit: 50 }));
    const columns = [
      [t("col.job"), (j) => h("code", { text: j.id })],
      [t("col.operation"), (j) => h("code", { text: j.operation })],
      [t("col.state"), (j) => t(`job.${j.state}`)],
      [t("col.attempts"), (j) => formatNumber(j.attempts)],
      [t("col.created"), (j) => timeCell(j.created_at)],
      [t("col.expires"), (j) => formatDateTime(j.expires_at)],
      [t("col.error"), (j) => (j.error ? j.error.code : "–")],
    ];
    if (ctx.isAdmin) {
      columns.push([
        t("col.actions"),
        (j) => {
          if (j.state === "pending") return actionButton(t("action.cancel_job"), () => jobAction(j, "cancel"), { danger: true });
          if (j.state === "failed" || j.state === "expired") return actionButton(t("action.retry_job"), () => jobAction(j, "retry"));
          return "–";
        },
      ]);
    }
    put(jobs.body, table(columns, answer.jobs, { caption: t("agent.jobs"), empty: t("agent.no_jobs") }));
  }

  async function jobAction(job, action) {
    await post(`/v1/admin/jobs/${seg(job.id)}/${action}`);
    flash(t(`done.job_${action}`, { job: job.id }), "success");
    await loadJobs();
  }

  async function loadHistory() {
    const answer = await get(withQuery(`${base}/history`, { limit: 50 }));
    put(
      history.body,
      table(
        [
          [t("col.at"), (e) => formatDateTime(e.at)],
          [t("col.event"), (e) => t(`event.${e.kind}`)],
          [t("col.details"), eventDetails],
        ],
        answer.events,
        { caption: t("agent.history"), empty: t("agent.no_history") },
      ),
    );
  }

  jobState.addEventListener("change", () => loadJobs().catch(flashError));

  let reported = false;
  async function loadAll() {
    const results = await Promise.allSettled([loadStatus(), loadLatency(), loadErrors(), loadCalls(), loadJobs(), loadHistory()]);
    const failure = results.find((r) => r.status === "rejected");
    // One failing endpoint must not hide the rest, nor flash the same error every 5 seconds.
    if (failure && !reported && failure.reason.status !== 401) flashError(failure.reason);
    reported = Boolean(failure);
  }

  const refresher = new Refresher(loadAll, ctx.live, (event) => event.agent === name);
  return () => refresher.stop();
}
