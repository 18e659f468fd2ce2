// Each gate's values over time, drawn as SVG by hand: one marker per evaluation, coloured
// by its verdict (with the judge's explanation as its tooltip), the threshold as a dashed
// line, and the stable version's values beside the canary's where the gate compares them.

const SVG = "http://www.w3.org/2000/svg";
const W = 480, H = 200, LEFT = 56, RIGHT = 12, TOP = 14, BOTTOM = 26;
const VERDICTS = ["pass", "fail", "inconclusive", "error"];

function el(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

const fmt = (v) => (v === null || v === undefined ? "none" : Number(v.toPrecision(4)).toString());

// The line a value must stay under (max) or over (min); a relative gate's allowance moves
// with the stable value, so it is one point per evaluation.
function limits(gate, point) {
  const found = [];
  if (gate.max !== undefined && gate.max !== null) found.push({ kind: "max", value: gate.max });
  if (gate.min !== undefined && gate.min !== null) found.push({ kind: "min", value: gate.min });
  const rel = gate.relative;
  if (rel && point && point.stable !== null && point.stable !== undefined) {
    const byPercent = rel.max_increase_percent != null ? Math.abs(point.stable) * rel.max_increase_percent / 100 : null;
    const allowance = Math.max(byPercent ?? -Infinity, rel.max_increase ?? -Infinity);
    if (Number.isFinite(allowance)) found.push({ kind: "allowed", value: point.stable + allowance });
  }
  return found;
}

// The targets a gate's results name, in order of first appearance (null: one question
// covering several targets, or a record from before results named their target).
export function targetsOf(events, name) {
  const seen = [];
  for (const event of events) {
    if (event.kind !== "analysis.evaluated") continue;
    for (const result of event.data?.results ?? []) {
      const target = result.target ?? null;
      if (result.gate === name && !seen.includes(target)) seen.push(target);
    }
  }
  return seen.length ? seen : [null];
}

// The evaluations of one gate (on one target, when given): [{at, value, stable, verdict,
// explanation, samples}]
export function series(events, name, target) {
  const points = [];
  for (const event of events) {
    if (event.kind !== "analysis.evaluated") continue;
    for (const result of event.data?.results ?? []) {
      if (result.gate !== name) continue;
      if (target !== undefined && (result.target ?? null) !== target) continue;
      points.push({
        seq: event.seq,
        at: Date.parse(event.at),
        value: result.value ?? null,
        stable: result.stable_value ?? null,
        verdict: String(result.verdict).toLowerCase(),
        explanation: result.explanation,
      });
    }
  }
  return points;
}

function chart(gate, points) {
  const fixed = limits(gate, null);
  const allowed = points.map((p) => limits(gate, p).find((l) => l.kind === "allowed")?.value ?? null);
  const numbers = [
    ...points.flatMap((p) => [p.value, p.stable]), ...fixed.map((l) => l.value), ...allowed,
  ].filter((v) => v !== null && Number.isFinite(v));
  let low = Math.min(0, ...numbers), high = Math.max(...numbers, 0);
  if (high === low) high = low + 1;
  high += (high - low) * 0.1;
  const t0 = points.length ? points[0].at : 0;
  const t1 = points.length ? points[points.length - 1].at : 1;
  const x = (t) => (t1 === t0 ? (LEFT + W - RIGHT) / 2 : LEFT + ((t - t0) / (t1 - t0)) * (W - LEFT - RIGHT));
  const y = (v) => TOP + (1 - (v - low) / (high - low)) * (H - TOP - BOTTOM);

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-gate": gate.name, class: "gate-chart" });
  svg.append(el("title", {}, `${gate.name}: ${points.length} evaluation(s)`));
  svg.append(el("line", { x1: LEFT, x2: W - RIGHT, y1: y(low), y2: y(low), class: "axis" }));
  svg.append(el("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, class: "axis" }));
  for (const v of [low, (low + high) / 2, high]) {
    svg.append(el("text", { x: LEFT - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v)));
  }
  if (points.length) {
    svg.append(el("text", { x: LEFT, y: H - 8, class: "tick" }, new Date(t0).toLocaleTimeString()));
    svg.append(el("text", { x: W - RIGHT, y: H - 8, class: "tick", "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  }
  for (const limit of fixed) {
    const line = el("line", { x1: LEFT, x2: W - RIGHT, y1: y(limit.value), y2: y(limit.value), class: `threshold threshold-${limit.kind}`, "data-threshold": limit.value });
    line.append(el("title", {}, `${limit.kind} ${fmt(limit.value)}`));
    svg.append(line, el("text", { x: W - RIGHT, y: y(limit.value) - 3, class: "tick threshold-label", "text-anchor": "end" }, `${limit.kind} ${fmt(limit.value)}`));
  }
  const path = (values, cls, attrs = {}) => {
    const drawn = points.map((p, i) => [p.at, values[i]]).filter(([, v]) => v !== null && Number.isFinite(v));
    if (!drawn.length) return;
    const d = drawn.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(el("path", { d, class: cls, ...attrs }));
  };
  path(allowed, "threshold threshold-allowed", { "data-threshold": "relative" });
  path(points.map((p) => p.stable), "series stable", { "data-series": "stable" });
  path(points.map((p) => p.value), "series canary", { "data-series": "canary" });
  for (const p of points) {
    if (p.stable !== null) svg.append(el("circle", { cx: x(p.at), cy: y(p.stable), r: 2.5, class: "stable-point" }));
  }
  for (const p of points) {
    const measured = p.value !== null && Number.isFinite(p.value);
    const verdict = VERDICTS.includes(p.verdict) ? p.verdict : "error";
    const marker = el("circle", {
      cx: x(p.at), cy: measured ? y(p.value) : y(low), r: 4.5,
      class: `point verdict-${verdict}${measured ? "" : " unmeasured"}`, "data-verdict": verdict, "data-seq": p.seq,
    });
    marker.append(el("title", {}, p.explanation ?? verdict));
    svg.append(marker);
  }
  return svg;
}

export function gateCharts(container, rollout, events) {
  const gates = rollout.document?.spec?.analysis?.gates ?? [];
  if (!gates.length) {
    container.replaceChildren(document.createTextNode("This rollout has no gates."));
    return;
  }
  // A gate judged on several targets gets one chart per target.
  const figures = gates.flatMap((gate) => {
    const targets = targetsOf(events, gate.name);
    return targets.map((target) => {
      const points = series(events, gate.name, targets.length > 1 ? target : undefined);
      const compares = points.some((p) => p.stable !== null);
      const legend = document.createElement("figcaption");
      const last = points[points.length - 1];
      const title = targets.length > 1 ? `${gate.name} [${target ?? "asked once"}]` : gate.name;
      legend.textContent = `${title}: ${points.length} evaluation(s)` +
        (compares ? " · canary (solid) beside stable (dotted)" : "") +
        (last ? ` · last: ${last.explanation}` : "");
      const figure = document.createElement("figure");
      figure.className = "chart";
      figure.dataset.gate = gate.name;
      if (targets.length > 1 && target !== null) figure.dataset.target = target;
      figure.append(chart(gate, points), legend);
      return figure;
    });
  });
  container.className = "charts";
  container.replaceChildren(...figures);
}
