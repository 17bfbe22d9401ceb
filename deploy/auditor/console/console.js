// The auditor console: a small client of /api/v1. No framework, no external resources; every value
// from the trail is inserted as text (never as HTML).
"use strict";

const state = { token: sessionStorage.getItem("collection-audit-token"), me: null, overview: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const badge = (text, kind) => el("span", { class: `badge ${kind || text}` }, text);
const status = (text) => { $("status").textContent = text || ""; };
const fmtInt = (n) => Number(n).toLocaleString("en-US");

class ApiError extends Error {}

async function api(path, params = {}, raw = false) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value != null) query.set(key, value);
  const response = await fetch(`/api/v1${path}?${query}`, { headers: { Authorization: `Bearer ${state.token}` } });
  if (response.status === 401) { signOut("Your token was refused: " + (await detail(response))); throw new ApiError(); }
  if (!response.ok) throw new ApiError(await detail(response));
  return raw ? response : response.json();
}

async function detail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch { return response.statusText; }
}

function range() {
  const from = $("from").value, to = $("to").value;
  const params = {};
  if (from) params.from = `${from}T00:00:00Z`;
  if (to) params.to = new Date(Date.parse(`${to}T00:00:00Z`) + 86400000).toISOString();
  return params;
}

async function run(task) {
  status("Loading…");
  try { await task(); status(""); }
  catch (error) { if (error instanceof ApiError) status(error.message ? `Could not load: ${error.message}` : ""); else throw error; }
}

function table(columns, rows, rowClass) {
  const head = el("tr", {}, columns.map(([, label]) => el("th", {}, label)));
  const body = rows.map((row) => el("tr", { class: rowClass ? rowClass(row) : "" },
    columns.map(([key, , render]) => el("td", { class: key === "text" || key === "summary" ? "text" : "" },
      render ? render(row[key], row) : (row[key] ?? "")))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

async function download(path, params, name) {
  await run(async () => {
    const response = await api(path, { ...params, format: "csv" }, true);
    const url = URL.createObjectURL(await response.blob());
    el("a", { href: url, download: `${name}.csv` }).click();
    URL.revokeObjectURL(url);
  });
}

// ---- sign-in and navigation ------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem("collection-audit-token");
  state.token = null;
  $("nav").hidden = true; $("range-bar").hidden = true;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = true; });
  $("who").textContent = "";
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

async function signIn() {
  const me = await api("/me");
  state.me = me;
  $("who").textContent = `${me.name} · ${me.role}`;
  $("signin").hidden = true; $("nav").hidden = false; $("range-bar").hidden = false;
  const can = (p) => me.permissions.includes(p);
  document.querySelectorAll(".export").forEach((b) => { b.hidden = !can("export"); });
  document.querySelector('[data-view="verify"]').hidden = !can("verify");
  state.overview = await api("/overview");
  setDefaultRange(state.overview);
  fillReports(state.overview.reports);
  show(location.hash.slice(1) || "overview");
}

function setDefaultRange(overview) {
  const last = overview.last_action ? new Date(overview.last_action) : new Date();
  const first = overview.first_action ? new Date(overview.first_action) : new Date(last - 90 * 86400000);
  const from = new Date(Math.max(first.getTime(), last.getTime() - 365 * 86400000));
  $("from").value = from.toISOString().slice(0, 10);
  $("to").value = last.toISOString().slice(0, 10);
  $("range-hint").textContent = overview.first_action
    ? `The trail holds events from ${overview.first_action.slice(0, 10)} to ${overview.last_action.slice(0, 10)} (UTC dates).`
    : "The trail is empty so far.";
}

const views = { overview: showOverview, debtor: () => {}, alerts: showAlerts, reports: () => {}, verify: () => {} };

function show(name) {
  if (!views[name]) name = "overview";
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${name}`; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  run(async () => views[name]());
}

// ---- views -----------------------------------------------------------------------------------

async function showOverview() {
  const o = await api("/overview");
  $("overview-cards").replaceChildren(...[
    ["actions", "actions stored"], ["debtors", "debtors"], ["alerts", "alerts raised"],
    ["reference_events", "reference events"], ["dead_letters", "dead letters"],
  ].map(([key, label]) => el("div", {}, el("b", {}, fmtInt(o[key])), el("span", {}, label))));
  const report = await api("/reports/alerts-by-rule", range());
  const totals = {};
  for (const [, rule, , alerts] of report.rows) totals[rule] = (totals[rule] || 0) + alerts;
  $("overview-chart").replaceChildren(bars(Object.entries(totals).sort((a, b) => b[1] - a[1])));
}

function bars(entries) {
  const max = Math.max(1, ...entries.map(([, n]) => n));
  if (!entries.length) return el("p", { class: "hint" }, "Nothing in this range.");
  return el("div", { class: "bars" }, entries.map(([label, n]) => [
    el("div", {}, label), el("div", {}, el("div", { class: "bar", style: `width:${(100 * n) / max}%` })),
    el("div", {}, fmtInt(n))]));
}

async function showTimeline(debtor, cursor) {
  const body = await api(`/debtors/${encodeURIComponent(debtor)}/timeline`, { ...range(), cursor, limit: 200 });
  const rows = table([
    ["local_time", "Debtor-local time"], ["kind", "Kind", (v) => badge(v)],
    ["type", "What", (v, r) => (r.kind === "alert" ? [badge(r.severity), " ", v] : v)],
    ["channel", "Direction"], ["agency_id", "Agency"], ["collector_id", "Collector"],
    ["text", "Message / finding"], ["detail", "Detail"],
  ], body.rows, (r) => (r.kind === "alert" ? "alert" : ""));
  const target = $("debtor-result");
  if (!cursor) {
    target.replaceChildren(el("p", {}, body.rows.length
      ? `${body.rows.length}${body.next_cursor ? "+" : ""} entries for ${debtor}`
      : `Nothing for ${debtor} in this range.`));
  }
  if (body.rows.length) target.append(rows);
  if (body.next_cursor) {
    const more = el("button", { class: "secondary more" }, "Load more");
    more.onclick = () => { more.remove(); run(() => showTimeline(debtor, body.next_cursor)); };
    target.append(more);
  }
}

function alertFilters() {
  return { ...range(), rule: $("alerts-rule").value, severity: $("alerts-severity").value,
           agency: $("alerts-agency").value.trim(), debtor: $("alerts-debtor").value.trim() };
}

async function showAlerts(cursor) {
  if ($("alerts-rule").options.length === 1) {
    const report = await api("/reports/alerts-by-rule", range());
    for (const rule of [...new Set(report.rows.map((r) => r[1]))].sort()) $("alerts-rule").append(el("option", {}, rule));
  }
  const body = await api("/alerts", { ...alertFilters(), cursor, limit: 200 });
  const rows = table([
    ["occurred_at", "When (UTC)", (v) => v.slice(0, 19).replace("T", " ")], ["severity", "Severity", (v) => badge(v)],
    ["rule_id", "Rule"], ["debtor_id", "Debtor", (v) => debtorLink(v)], ["agency_id", "Agency"],
    ["collector_id", "Collector"], ["summary", "Finding"], ["citation", "Rule source"],
  ], body.rows);
  const target = $("alerts-result");
  if (!cursor) target.replaceChildren(el("p", {}, `${body.rows.length}${body.next_cursor ? "+" : ""} alerts`));
  target.append(rows);
  if (body.next_cursor) {
    const more = el("button", { class: "secondary more" }, "Load more");
    more.onclick = () => { more.remove(); run(() => showAlerts(body.next_cursor)); };
    target.append(more);
  }
}

function debtorLink(debtor) {
  const link = el("a", { href: "#debtor" }, debtor);
  link.onclick = () => { $("debtor-id").value = debtor; setTimeout(() => run(() => showTimeline(debtor)), 0); };
  return link;
}

function fillReports(reports) {
  $("report-name").replaceChildren(...reports.map((r) => el("option", { value: r.name }, r.title)));
  const describe = () => {
    const report = reports.find((r) => r.name === $("report-name").value);
    $("report-description").textContent = report ? report.description : "";
  };
  $("report-name").onchange = describe;
  describe();
}

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

async function showReport() {
  const name = $("report-name").value;
  const body = await api(`/reports/${name}`, { ...range(), agency: $("report-agency").value.trim() });
  const rows = body.rows.map((row) => Object.fromEntries(body.columns.map((c, i) => [c, row[i]])));
  const chart = $("report-chart");
  chart.replaceChildren();
  const columns = body.columns.map((c) => [c, c.replaceAll("_", " ")]);
  let rowClass;
  if (name === "quiet-hours") chart.append(heatMap(rows));
  if (name === "alerts-by-rule") {
    const totals = {};
    for (const r of rows) totals[r.rule_id] = (totals[r.rule_id] || 0) + r.alerts;
    chart.append(bars(Object.entries(totals).sort((a, b) => b[1] - a[1])));
  }
  if (name === "collector-league") {
    chart.append(el("p", { class: "hint" }, "Alerts per 1,000 actions, the 15 highest:"),
      bars(rows.slice(0, 15).map((r) => [`${r.collector_id} (${r.agency_id})`, r.alerts_per_1000_actions])));
  }
  if (name === "contacts-per-day") {
    rowClass = (r) => (r.over_cap ? "over" : "");
    columns.find((c) => c[0] === "over_cap").push((v) => (v ? badge("over cap", "HIGH") : ""));
    columns.find((c) => c[0] === "cap").push((v) => (v < 0 ? "none" : v));
  }
  if (name === "complaint-sla") columns.find((c) => c[0] === "status").push((v) => badge(v));
  const shown = rows.slice(0, 500);
  $("report-result").replaceChildren(
    el("p", {}, `${fmtInt(rows.length)}${body.truncated ? "+" : ""} rows` +
      (rows.length > shown.length || body.truncated ? " (the most telling first; download the CSV for all)" : "")),
    table(columns, shown, rowClass));
}

function heatMap(rows) {
  const cells = {};
  for (const r of rows) cells[`${r.weekday}-${r.hour}`] = r;
  const max = Math.max(1, ...rows.map((r) => r.contacts));
  const grid = el("div", { class: "heat", role: "img", "aria-label": "Contacts by debtor-local weekday and hour" });
  grid.append(el("div", { class: "label" }, ""), ...Array.from({ length: 24 }, (_, h) => el("div", { class: "label" }, h)));
  WEEKDAYS.forEach((day, index) => {
    grid.append(el("div", { class: "label" }, day));
    for (let hour = 0; hour < 24; hour += 1) {
      const cell = cells[`${index + 1}-${hour}`] || { contacts: 0, quiet_hours_alerts: 0 };
      const share = cell.contacts / max;
      grid.append(el("div", {
        class: `cell${cell.quiet_hours_alerts ? " flagged" : ""}`,
        title: `${day} ${hour}:00 — ${cell.contacts} contacts, ${cell.quiet_hours_alerts} quiet-hours alerts`,
        style: `background: rgba(31, 95, 191, ${cell.contacts ? 0.08 + 0.92 * share : 0.03}); color: ${share > 0.55 ? "#fff" : "inherit"}`,
      }, cell.contacts || ""));
    }
  });
  return el("div", {}, grid, el("p", { class: "hint" },
    "Darker: more outbound contacts at that debtor-local hour. Red outline: quiet-hours alerts were raised there."));
}

async function showVerify() {
  const body = await api("/verify", { ...range(), debtor: $("verify-debtor").value.trim(),
                                     agency: $("verify-agency").value.trim() });
  const rows = Object.entries(body.tables).map(([name, t]) => ({ name, ...t }));
  $("verify-result").replaceChildren(
    el("div", { class: `verdict ${body.ok ? "ok" : "bad"}` }, body.ok
      ? "The chain is intact: no row was altered, removed or inserted."
      : `${fmtInt(body.problems.length)} problem(s) found: the rows below were changed after they were stored.`),
    table([["name", "Table"], ["chains", "Chains checked", fmtInt], ["rows", "Rows checked", fmtInt],
           ["problems", "Problems", fmtInt]], rows),
    body.problems.length ? el("h2", {}, "Problems") : "",
    body.problems.length ? table([["kind", "Kind", (v) => badge(v, "CRITICAL")], ["table", "Table"],
      ["chain_key", "Debtor / entity"], ["month", "Month"], ["chain_seq", "Position"], ["row_id", "Row id"],
      ["detail", "What"]], body.problems) : "");
}

// ---- wiring ----------------------------------------------------------------------------------

$("signin-form").onsubmit = (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("collection-audit-token", state.token);
  run(signIn);
};
$("debtor-form").onsubmit = (event) => { event.preventDefault(); run(() => showTimeline($("debtor-id").value.trim())); };
$("alerts-form").onsubmit = (event) => { event.preventDefault(); run(() => showAlerts()); };
$("alerts-csv").onclick = () => download("/alerts", alertFilters(), "alerts");
$("reports-form").onsubmit = (event) => { event.preventDefault(); run(showReport); };
$("report-csv").onclick = () => download(`/reports/${$("report-name").value}`,
  { ...range(), agency: $("report-agency").value.trim() }, $("report-name").value);
$("verify-form").onsubmit = (event) => { event.preventDefault(); run(showVerify); };
window.addEventListener("hashchange", () => { if (state.me) show(location.hash.slice(1)); });

(function start() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    state.token = fromLink;
    sessionStorage.setItem("collection-audit-token", fromLink);
    history.replaceState(null, "", location.pathname + "#overview");
  }
  if (state.token) run(signIn); else signOut();
})();
