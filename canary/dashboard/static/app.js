// The dashboard: the rollout list (#/) and a rollout's page (#/rollouts/<id>), both live.
// Every element is built with the DOM API from text (never innerHTML), so nothing a spec or
// an event says can become markup.

import { api, ApiError, follow, token } from "./api.js";
import { gateCharts } from "./chart.js";

const PHASES = [ // canary.model.Phase (a test keeps them equal)
  "pending", "shifting", "baking", "awaiting_approval", "paused", "promoting",
  "succeeded", "rolling_back", "rolled_back", "rollback_failed", "failed",
];
const COMMANDS = ["promote", "pause", "resume", "abort"];

let me = null; // {name, role, anonymous}
let leave = new AbortController(); // aborts the current view's streams and timers

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") element.textContent = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return element;
}

// "1h30m" / "5s" / "0s" (as the API writes durations) -> seconds
export function seconds(text) {
  const units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  let total = 0;
  for (const [, amount, unit] of String(text ?? "0s").matchAll(/([\d.]+)(ms|s|m|h|d)/g)) {
    total += Number(amount) * units[unit];
  }
  return total;
}

export function duration(total) {
  total = Math.max(0, Math.round(total));
  if (total < 60) return `${total}s`;
  if (total < 3600) return `${Math.floor(total / 60)}m${String(total % 60).padStart(2, "0")}s`;
  if (total < 86400) return `${Math.floor(total / 3600)}h${String(Math.floor((total % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(total / 86400)}d${Math.floor((total % 86400) / 3600)}h`;
}

const age = (iso) => duration((Date.now() - Date.parse(iso)) / 1000);
const phaseBadge = (phase) => h("span", { class: `phase phase-${phase}`, "data-phase": phase, text: phase });
const percent = (weight) => `${Number(weight).toFixed(Number.isInteger(weight) ? 0 : 1)}%`;
const view = () => document.getElementById("view");

function versions(rollout) {
  return rollout.targets.map((t) => `${t.stable ?? "?"} → ${t.canary ?? "?"}`).join(", ");
}

function problemBox(error) {
  const text = error instanceof ApiError ? `${error.status}: ${error.message}` : String(error);
  return h("p", { class: "error", role: "alert", text });
}

// ------------------------------------------------------------------ who is looking

function showWho() {
  const who = document.getElementById("who");
  who.textContent = me.anonymous
    ? `anonymous (role ${me.role}: this daemon allows anonymous access)`
    : `${me.name} (role ${me.role})`;
  who.dataset.role = me.role;
  document.getElementById("forget").hidden = me.anonymous && !token.get();
}

async function identify() {
  try {
    me = await api("/whoami");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      me = null;
      askForToken(token.get() ? error.message : "");
      return false;
    }
    throw error;
  }
  document.getElementById("login").hidden = true;
  showWho();
  return true;
}

function askForToken(message) {
  leave.abort();
  view().replaceChildren();
  document.getElementById("who").textContent = "";
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = message;
  document.getElementById("token").focus();
}

// ------------------------------------------------------------------ the list

function listView() {
  const phase = h("select", { id: "phase-filter", "aria-label": "phase" },
    h("option", { value: "", text: "every phase" }),
    PHASES.map((p) => h("option", { value: p, text: p })));
  const target = h("input", { id: "target-filter", type: "search", placeholder: "target contains…", "aria-label": "target" });
  const body = h("tbody");
  const state = h("span", { class: "stream-state", id: "stream-state" });
  const error = h("div");
  view().replaceChildren(
    h("section", {},
      h("div", { class: "filters" }, h("label", {}, "Phase ", phase), h("label", {}, "Target ", target), state),
      error,
      h("table", { id: "rollouts", class: "rollouts" },
        h("thead", {}, h("tr", {}, ["Rollout", "Targets", "Versions (stable → canary)", "Phase", "Step", "Weight", "Age", "Started by"].map((t) => h("th", { text: t })))),
        body)));

  const rollouts = new Map();
  const draw = () => {
    const wanted = phase.value;
    const part = target.value.trim();
    const rows = [...rollouts.values()]
      .filter((r) => !wanted || r.phase === wanted)
      .filter((r) => !part || r.targets.some((t) => t.key.includes(part)))
      .sort((a, b) => (a.id < b.id ? 1 : -1))
      .map((r) => h("tr", { "data-id": r.id },
        h("td", {}, h("a", { href: `#/rollouts/${r.id}`, text: r.name })),
        h("td", { text: r.targets.map((t) => t.key).join(", ") }),
        h("td", { text: versions(r) }),
        h("td", {}, phaseBadge(r.phase)),
        h("td", { class: "step", text: `${r.step}/${r.steps}` }),
        h("td", { class: "weight", text: percent(r.weight) }),
        h("td", { text: age(r.created_at), title: r.created_at }),
        h("td", { text: r.created_by ?? "" })));
    body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 8, class: "empty", text: "no rollouts" }))]));
  };
  phase.addEventListener("change", draw);
  target.addEventListener("input", draw);

  const signal = leave.signal;
  const read = () => api("/rollouts?limit=200")
    .then((page) => {
      for (const r of page.items) if (!rollouts.has(r.id) || r.updated_at > rollouts.get(r.id).updated_at) rollouts.set(r.id, r);
      draw();
    })
    .catch((e) => error.replaceChildren(problemBox(e)));
  // Subscribe first, then read the list (again after each reconnect): the stream has no
  // replay, so a change between the two is not lost this way.
  follow("/rollouts", (kind, data) => {
    if (kind === "rollout") {
      rollouts.set(data.rollout.id, data.rollout);
      draw();
    }
  }, signal, (s) => {
    state.textContent = s === "live" ? "● live" : s;
    if (s === "live") read();
  }).catch((e) => error.replaceChildren(problemBox(e)));
  const ticker = setInterval(draw, 5000); // ages
  signal.addEventListener("abort", () => clearInterval(ticker));
}

// ------------------------------------------------------------------ a rollout

function plan(rollout, events) {
  const steps = rollout.document.spec.steps;
  const current = rollout.step - 1;
  const ended = !rollout.live;
  const bakeStarted = [...events].reverse().find((e) => e.kind === "bake.started" && e.step === rollout.step);
  let left = 0;
  steps.forEach((s, i) => {
    if (ended || i < current) return;
    const bake = seconds(s.bake);
    if (i === current && bakeStarted) left += Math.max(0, bake - (Date.now() - Date.parse(bakeStarted.at)) / 1000);
    else left += bake;
  });
  const bar = h("ol", { class: "plan", id: "plan" }, steps.map((s, i) => {
    let state = i < current ? "done" : i === current ? "current" : "todo";
    if (rollout.phase === "succeeded") state = "done";
    if (ended && rollout.phase !== "succeeded" && i >= current) state = i === current ? "stopped" : "todo";
    const parts = [percent(s.weight)];
    if (seconds(s.bake) > 0) parts.push(`bake ${s.bake}`);
    if (s.approval) parts.push("approval");
    return h("li", { class: `plan-step ${state}`, "data-state": state, title: `step ${i + 1}: ${parts.join(", ")}` },
      h("span", { class: "plan-label", text: `${i + 1}. ${parts.join(" · ")}` }));
  }));
  const where = ended
    ? `${rollout.phase} at step ${rollout.step}/${rollout.steps}`
    : `step ${rollout.step}/${rollout.steps} at ${percent(rollout.weight)}` +
      (rollout.phase === "paused" ? " · paused (the bake clock stops)" :
        rollout.phase === "awaiting_approval" ? " · waiting for a promote" :
          ` · about ${duration(left)} of baking left`);
  return h("div", {}, bar, h("p", { class: "where", id: "where", text: where }));
}

function controls(rollout, show) {
  if (!me || me.role === "read") return null; // a read token sees everything and no buttons
  if (!rollout.live) return null;
  const reason = h("input", { id: "reason", type: "text", maxlength: 1000, placeholder: "reason (needed to abort)", "aria-label": "reason" });
  const act = async (name) => {
    const body = {};
    if (reason.value.trim() && name !== "resume") body.reason = reason.value.trim();
    try {
      const after = await api(`/rollouts/${rollout.id}/${name}`, { method: "POST", body });
      show(`${name}: done; the rollout is now ${after.phase}`, false);
    } catch (error) {
      show(`${name} refused: ${error instanceof ApiError ? error.message : error}`, true);
    }
  };
  const note = me.role === "operate" ? null
    : h("p", { class: "note", text: `Your token's role is ${me.role}; these commands need role operate, so the daemon will refuse them.` });
  return h("div", { class: "controls", id: "controls" },
    COMMANDS.map((name) => h("button", { type: "button", "data-command": name, onclick: () => act(name), text: name[0].toUpperCase() + name.slice(1) })),
    reason, note);
}

// A command's reason is data of its event; the message may not repeat it.
function withReason(e) {
  const reason = e.data?.reason;
  return reason && !e.message.includes(reason) ? `${e.message}: “${reason}”` : e.message;
}

function eventRow(e) {
  return h("tr", { "data-seq": e.seq, "data-kind": e.kind },
    h("td", { text: new Date(e.at).toLocaleTimeString(), title: e.at }),
    h("td", { text: `${e.step}` }),
    h("td", { text: percent(e.weight) }),
    h("td", { class: "kind", text: e.kind }),
    h("td", { text: e.actor ?? "" }),
    h("td", { class: "message", text: withReason(e) }));
}

async function rolloutView(id) {
  const signal = leave.signal;
  const head = h("div");
  const body = h("div");
  const result = h("p", { id: "result", role: "status" });
  const charts = h("div", { id: "charts" });
  const log = h("tbody", { id: "events" });
  view().replaceChildren(
    h("p", {}, h("a", { href: "#/", text: "← all rollouts" })), head, body, result,
    h("h2", { text: "Gates" }), charts,
    h("h2", { text: "Events" }),
    h("table", { class: "events" },
      h("thead", {}, h("tr", {}, ["Time", "Step", "Weight", "Event", "Who", "What"].map((t) => h("th", { text: t })))),
      log));
  const show = (text, refused) => {
    result.textContent = text;
    result.className = refused ? "error" : "ok";
  };
  let rollout;
  try {
    rollout = await api(`/rollouts/${id}`);
  } catch (error) {
    head.replaceChildren(problemBox(error));
    return;
  }
  const events = [];
  let controlsShown = null;
  const draw = () => {
    head.replaceChildren(...[
      h("h1", {}, rollout.name, " ", phaseBadge(rollout.phase)),
      h("p", { class: "meta", text: `${rollout.targets.map((t) => t.key).join(", ")} · ${versions(rollout)} · started by ${rollout.created_by ?? "?"} ${age(rollout.created_at)} ago` }),
      rollout.paused_reason && rollout.phase === "paused" ? h("p", { class: "why", id: "why", text: `Paused: ${rollout.paused_reason}` }) : null,
      rollout.reason ? h("p", { class: rollout.phase === "succeeded" ? "meta" : "why", id: "why", text: rollout.reason }) : null,
      rollout.quarantine ? h("p", { class: "why", id: "quarantine", text: `Quarantined (its stored record no longer validates; only an abort applies): ${rollout.quarantine.error} ${rollout.quarantine.fix}` }) : null,
    ].filter(Boolean));
    if (rollout.quarantine) { // the stored plan cannot be trusted: nothing drawn from it
      body.replaceChildren();
      charts.replaceChildren();
    } else {
      body.replaceChildren(plan(rollout, events));
      gateCharts(charts, rollout, events);
    }
    const wantControls = `${rollout.live}`;
    if (controlsShown !== wantControls) { // keep the reason typed so far
      controlsShown = wantControls;
      const existing = document.getElementById("controls");
      const fresh = controls(rollout, show);
      if (existing) existing.remove();
      if (fresh) result.before(fresh);
    }
  };
  draw();
  let refreshing = null;
  const refresh = () => {
    refreshing ??= api(`/rollouts/${id}`).then((r) => { rollout = r; draw(); })
      .catch(() => {}).finally(() => { refreshing = null; });
  };
  if (rollout.quarantine) { // nothing runs it, so there is nothing to follow: its log as stored
    api(`/rollouts/${id}/events`).then((page) => {
      events.push(...page.items);
      log.replaceChildren(...page.items.reverse().map(eventRow));
    }).catch((e) => body.append(problemBox(e)));
    return;
  }
  follow(`/rollouts/${id}/events`, (kind, data) => {
    if (kind === "end") {
      rollout = { ...rollout, ...data.rollout };
      draw();
      return;
    }
    events.push(data);
    log.prepend(eventRow(data));
    refresh();
  }, signal).catch((e) => body.append(problemBox(e)));
  const ticker = setInterval(() => rollout.live && draw(), 1000); // time left
  signal.addEventListener("abort", () => clearInterval(ticker));
}

// ------------------------------------------------------------------ routing

async function route() {
  leave.abort();
  leave = new AbortController();
  if (!me && !(await identify())) return;
  const match = location.hash.match(/^#\/rollouts\/([0-9a-f]{22})$/);
  if (match) await rolloutView(match[1]);
  else listView();
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  token.set(field.value.trim());
  field.value = "";
  if (await identify()) route();
});
document.getElementById("forget").addEventListener("click", () => {
  token.clear();
  me = null;
  route();
});
window.addEventListener("hashchange", route);
route().catch((e) => view().replaceChildren(problemBox(e)));
