// The latency chart: p50 and p99 per minute as two SVG lines over the last hour, with calls as
// faint bars and minutes with errors marked. Drawn from numbers only (no library); the figure
// also carries a text summary for screen readers.

import { s } from "./dom.js";
import { formatMs, formatTime, t } from "./i18n.js";

const WIDTH = 900;
const HEIGHT = 240;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 5, 10].find((m) => m * power >= value);
  return step * power;
}

/** A series as a line with a dot per minute, so a lone minute with calls still shows. */
function line(points, x, y, key, cls) {
  const known = points.filter((p) => p[key] !== null && p[key] !== undefined);
  if (!known.length) return null;
  return s(
    "g",
    { class: `series ${cls}` },
    s("polyline", { points: known.map((p) => `${x(p).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ") }),
    known.map((p) => s("circle", { cx: x(p).toFixed(1), cy: y(p[key]).toFixed(1), r: 3 })),
  );
}

/** An <svg> for `points` ({minute, calls, errors, p50_ms, p99_ms}) across `minutes`. */
export function latencyChart(points, minutes) {
  const end = Date.now();
  const start = end - minutes * 60000;
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const top = niceCeiling(Math.max(0, ...points.map((p) => p.p99_ms ?? p.p50_ms ?? 0)));
  const maxCalls = Math.max(1, ...points.map((p) => p.calls || 0));
  const x = (p) => PAD.left + ((new Date(p.minute).getTime() - start) / (end - start)) * innerW;
  const y = (ms) => PAD.top + innerH - (Math.min(ms, top) / top) * innerH;
  const barW = Math.max(2, innerW / minutes - 1);
  const last = points[points.length - 1];
  const label = last
    ? t("chart.summary", { minutes, p50: formatMs(last.p50_ms), p99: formatMs(last.p99_ms) })
    : t("chart.no_data", { minutes });
  const ticks = [0, top / 2, top];
  return s(
    "svg",
    { class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label },
    s("title", {}, label),
    points.map((p) =>
      s("rect", {
        class: p.errors ? "bar bar-errors" : "bar",
        x: (x(p) - barW / 2).toFixed(1),
        y: (PAD.top + innerH - ((p.calls || 0) / maxCalls) * innerH * 0.3).toFixed(1),
        width: barW.toFixed(1),
        height: (((p.calls || 0) / maxCalls) * innerH * 0.3).toFixed(1),
      }),
    ),
    ticks.map((value) => [
      s("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }),
      s("text", { class: "axis", x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }, formatMs(value)),
    ]),
    s("text", { class: "axis", x: PAD.left, y: HEIGHT - 8 }, formatTime(new Date(start).toISOString())),
    s("text", { class: "axis", x: WIDTH - PAD.right, y: HEIGHT - 8, "text-anchor": "end" }, formatTime(new Date(end).toISOString())),
    line(points, x, y, "p50_ms", "p50"),
    line(points, x, y, "p99_ms", "p99"),
  );
}

/** The legend under the chart: what each line and mark means. */
export function chartLegend() {
  return [
    ["p50", t("chart.p50")],
    ["p99", t("chart.p99")],
    ["bar", t("chart.calls")],
    ["bar-errors", t("chart.errors")],
  ];
}
