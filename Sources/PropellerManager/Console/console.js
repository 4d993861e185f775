// Propeller's web console: the manager's REST API in a browser, with the token kept in this
// tab's session storage only. No framework and nothing fetched from elsewhere (the manager sends
// a Content-Security-Policy that forbids it); every value from the API reaches the page as text
// (textContent), never as markup.
"use strict";

const tokenKey = "propeller-token";
const namespaceKey = "propeller-namespace";
let refreshTimer = null;
let streamAbort = null;

function token() { return sessionStorage.getItem(tokenKey); }

// The namespace picked in the header: "" (the token's, else default), a name, or "*" (every
// namespace: lists only; a write then goes to the token's namespace).
function namespace() { return sessionStorage.getItem(namespaceKey) || ""; }

function scoped(method, path) {
  const ns = namespace();
  if (!ns || /[?&]namespace=/.test(path)) return path;
  if (ns === "*" && (method !== "GET" || !/^\/(tasks|actors)(\?|$)/.test(path))) return path;
  return path + (path.includes("?") ? "&" : "?") + "namespace=" + encodeURIComponent(ns);
}

async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(scoped(method, path), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) { signOut("Your token was refused: sign in again."); throw new Error("unauthorized"); }
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(value && value.error ? value.error : response.status + " " + response.statusText);
  return value;
}

// Element helper: el("td", {class: "num"}, "text", child, ...); strings become text nodes.
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value); else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A table with `headers`; `rows` is the tbody itself (filled later) or its rows. A tbody put
// inside another lays every row out in the first column.
function table(headers, rows) {
  const tbody = rows instanceof HTMLElement && rows.tagName === "TBODY" ? rows : el("tbody", {}, rows);
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), tbody);
}

function bytes(n) {
  if (n === undefined || n === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function ago(seconds) {
  if (!seconds) return "-";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return Math.floor(s) + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function stateCell(state) { return el("td", { class: "state-" + state, "data-state": state }, state); }

function setStatus(text) { document.getElementById("status").textContent = text; }

function show(...nodes) {
  const app = document.getElementById("app");
  app.replaceChildren(...nodes);
}

function showError(error) {
  const existing = document.getElementById("error");
  const message = el("p", { class: "error", id: "error", role: "alert" }, String(error.message || error));
  if (existing) existing.replaceWith(message); else document.getElementById("app").prepend(message);
}

// Runs `load` now and every `seconds` while this view is shown.
function every(seconds, load) {
  const run = () => load().catch((e) => { if (e.message !== "unauthorized") showError(e); });
  run();
  refreshTimer = setInterval(run, seconds * 1000);
}

// MARK: sign-in

// What the sign-in view says next (why the user was signed out).
let notice = null;

function signOut(message) {
  sessionStorage.removeItem(tokenKey);
  sessionStorage.removeItem(namespaceKey);
  document.getElementById("namespace").replaceChildren();
  notice = message || null;
  if (location.hash !== "#/sign-in") location.hash = "#/sign-in"; else route();
}

function signInView() {
  const message = notice;
  notice = null;
  document.getElementById("nav").hidden = true;
  const input = el("input", { type: "password", id: "token", autocomplete: "off", required: true, size: 48, placeholder: "API token" });
  const form = el("form", { class: "stack", id: "sign-in" },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "An API token of this manager (propeller token create NAME). It stays in this browser tab only."),
    input,
    el("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(tokenKey, input.value.trim());
    try {
      await api("GET", "/proplets?limit=1");
      location.hash = "#/tasks";
    } catch (e) {
      if (e.message !== "unauthorized") showError(e);
    }
  });
  show(message ? el("p", { class: "error", role: "alert" }, message) : "", form);
  input.focus();
}

// MARK: namespaces

// Fills the header's namespace picker: a token bound to one namespace has that one alone;
// another picks any, or every namespace ("*") for the lists.
async function loadNamespaces() {
  const picker = document.getElementById("namespace");
  const me = await api("GET", "/whoami");
  let names = [];
  if (me.namespace) {
    names = [me.namespace];
  } else {
    try { names = (await api("GET", "/namespaces")).namespaces.map((n) => n.name); } catch (e) { names = ["default"]; }
    names.push("*");
  }
  if (!names.includes(namespace())) sessionStorage.setItem(namespaceKey, me.namespace || "default");
  picker.replaceChildren(...names.map((n) => el("option", { value: n, selected: n === namespace() }, n === "*" ? "all namespaces" : n)));
  picker.disabled = names.length === 1;
}

// MARK: fleet

async function drain(id, deadline) {
  const body = deadline === "" ? {} : { deadline_seconds: Number(deadline) };
  await api("POST", "/proplets/" + encodeURIComponent(id) + "/drain", body);
}

function fleetView() {
  const body = el("tbody");
  show(el("h1", {}, "Fleet"), table(["Proplet", "State", "Eligibility", "Drain", "Tasks", "CPU", "Memory", "Use now", "Last seen", ""], body));
  every(2, async () => {
    const page = await api("GET", "/proplets?limit=1000");
    const rows = await Promise.all(page.proplets.map(async (p) => {
      const allocated = p.allocated || {};
      let use = "-";
      try {
        const stats = await api("GET", "/proplets/" + encodeURIComponent(p.id) + "/stats");
        const last = stats.samples[stats.samples.length - 1];
        if (last) use = (last.cpu_cores || 0).toFixed(2) + " CPU, " + bytes(last.memory_bytes);
      } catch (e) { /* no samples yet */ }
      const deadline = el("input", { type: "number", min: 0, size: 6, placeholder: "deadline s", "aria-label": "drain deadline in seconds" });
      const actions = el("td", {},
        p.drain ? el("button", { type: "button", onclick: () => act(() => api("DELETE", "/proplets/" + encodeURIComponent(p.id) + "/drain")) }, "Cancel drain")
                : [deadline, el("button", { type: "button", "data-action": "drain", onclick: () => act(() => drain(p.id, deadline.value)) }, "Drain")],
        p.eligible === false && !p.drain ? el("button", { type: "button", onclick: () => act(() => api("PUT", "/proplets/" + encodeURIComponent(p.id) + "/eligibility", { eligible: true })) }, "Make eligible") : "");
      const drainText = p.drain ? (p.drain.deadline ? "until " + new Date(p.drain.deadline * 1000).toLocaleTimeString() : "no deadline") : "no";
      return el("tr", { "data-proplet": p.id },
        el("td", {}, p.name + (p.name !== p.id ? " (" + p.id + ")" : "")),
        stateCell((p.state || (p.alive ? "alive" : "lost")) + (p.draining ? ", shutting down" : "")),
        el("td", {}, p.eligible === false ? "ineligible" : "eligible"),
        el("td", {}, drainText),
        el("td", { class: "num" }, (p.task_count || 0) + " / " + p.capacity.tasks),
        el("td", { class: "num" }, ((allocated.cpu_millis || 0) / 1000) + " / " + p.capacity.cpu_millis / 1000),
        el("td", { class: "num" }, bytes(allocated.memory_bytes || 0) + " / " + bytes(p.capacity.memory_bytes)),
        el("td", { class: "num" }, use),
        el("td", {}, ago(p.last_seen)),
        actions);
    }));
    body.replaceChildren(...rows);
    setStatus(page.proplets.length + " proplets");
  });
}

async function act(action) {
  try { await action(); route(); } catch (e) { if (e.message !== "unauthorized") showError(e); }
}

// MARK: tasks

function tasksView() {
  const stateFilter = el("select", { id: "state-filter", "aria-label": "state" },
    ["", "created", "pending", "scheduled", "running", "unknown", "completed", "failed", "stopped"].map((s) => el("option", { value: s }, s || "any state")));
  const nameFilter = el("input", { type: "search", id: "name-filter", placeholder: "name contains", "aria-label": "name" });
  const body = el("tbody");
  const name = el("input", { id: "new-name", required: true, placeholder: "name", "aria-label": "task name" });
  const image = el("input", { id: "new-image", required: true, placeholder: "registry/repo:tag", size: 32, "aria-label": "image" });
  const command = el("input", { id: "new-command", placeholder: "command (run by sh -c); empty: the image's", size: 40, "aria-label": "command" });
  const create = el("form", { class: "inline", id: "new-task" }, name, image, command, el("button", { class: "primary", type: "submit" }, "Create and start"));
  create.addEventListener("submit", (event) => {
    event.preventDefault();
    const spec = { name: name.value.trim(), image: image.value.trim(), start: true };
    if (command.value.trim()) spec.command = ["sh", "-c", command.value];
    act(async () => {
      const task = await api("POST", "/tasks", spec);
      location.hash = "#/tasks/" + encodeURIComponent(task.id);
    });
  });
  const load = async () => {
    const state = stateFilter.value;
    const page = await api("GET", "/tasks?limit=200" + (state ? "&state=" + state : ""));
    const needle = nameFilter.value.trim().toLowerCase();
    const tasks = page.tasks.filter((t) => !needle || t.name.toLowerCase().includes(needle));
    body.replaceChildren(...tasks.map((t) => el("tr", { "data-task": t.id },
      el("td", {}, el("a", { href: "#/tasks/" + encodeURIComponent(t.id) }, t.name)),
      el("td", { "data-field": "namespace" }, t.namespace || "default"),
      stateCell(t.state),
      el("td", {}, t.assigned_proplet || "-"),
      el("td", { class: "num" }, t.attempt),
      el("td", {}, t.reason || ""),
      el("td", {}, ago(t.created_at)))));
    setStatus(page.total + " tasks");
  };
  stateFilter.addEventListener("change", () => load().catch(showError));
  nameFilter.addEventListener("input", () => load().catch(showError));
  show(el("h1", {}, "Tasks"), create, el("form", { class: "inline" }, stateFilter, nameFilter),
       table(["Name", "Namespace", "State", "Proplet", "Attempt", "Reason", "Created"], body));
  every(2, load);
}

// A small line graph of `values` (SVG, no library).
function graph(title, values, format) {
  const width = 320, height = 80;
  const max = Math.max(...values, 1e-9);
  const points = values.map((v, i) => (values.length === 1 ? 0 : (i / (values.length - 1)) * width).toFixed(1) + "," + (height - (v / max) * (height - 4) - 2).toFixed(1)).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  const last = values.length ? format(values[values.length - 1]) : "-";
  return el("div", { class: "graph" }, el("div", {}, title + ": ", el("strong", {}, last)), svg);
}

// Appends a task's log blocks to `pre` as they come (NDJSON), until the task ends.
async function followLogs(id, pre) {
  streamAbort = new AbortController();
  const response = await fetch(scoped("GET", "/tasks/" + encodeURIComponent(id) + "/logs?follow=true"),
                               { headers: { "Authorization": "Bearer " + token() }, signal: streamAbort.signal });
  if (!response.ok || !response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  pre.textContent = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line) pre.append(document.createTextNode(JSON.parse(line).data));
    }
  }
}

function taskView(id) {
  const fields = el("dl", { class: "fields", id: "task-fields" });
  const actions = el("div", { class: "inline" });
  const history = el("tbody");
  const logs = el("pre", { class: "logs", id: "task-logs" });
  const graphs = el("div", { class: "graphs", id: "task-usage" });
  show(el("p", {}, el("a", { href: "#/tasks" }, "← Tasks")), el("h1", { id: "task-title" }, id), actions, fields,
       el("h2", {}, "Usage"), graphs, el("h2", {}, "Logs"), logs, el("h2", {}, "History"), table(["At", "State", "Attempt", "Reason"], history));
  let following = false;
  every(1, async () => {
    const t = await api("GET", "/tasks/" + encodeURIComponent(id));
    document.getElementById("task-title").textContent = t.name;
    const result = t.result || {};
    const rows = [["ID", t.id], ["Namespace", t.namespace || "default"], ["State", t.state], ["Reason", t.reason || "-"], ["Image", t.image],
                  ["Command", (t.command || []).join(" ") || "(the image's)"], ["Proplet", t.assigned_proplet || "-"], ["Attempt", t.attempt],
                  ["Exit code", result.exit_code === undefined ? "-" : result.exit_code], ["Created", ago(t.created_at)], ["Finished", ago(t.finished_at)]];
    fields.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k.toLowerCase().replace(" ", "-") }, v)]));
    const active = ["pending", "scheduled", "running", "unknown"].includes(t.state);
    actions.replaceChildren(active ? el("button", { type: "button", id: "stop", onclick: () => act(() => api("POST", "/tasks/" + encodeURIComponent(id) + "/stop", {})) }, "Stop")
                                   : el("button", { type: "button", id: "start", onclick: () => act(() => api("POST", "/tasks/" + encodeURIComponent(id) + "/start", {})) }, "Run again"));
    history.replaceChildren(...(t.history || []).map((h) => el("tr", {}, el("td", {}, new Date(h.at * 1000).toLocaleTimeString()), stateCell(h.state), el("td", {}, h.attempt), el("td", {}, h.reason || ""))));
    if (active && !following) {
      following = true;
      followLogs(id, logs).catch(() => {}).finally(() => { following = false; });
    } else if (!active && !following) {
      const kept = await api("GET", "/tasks/" + encodeURIComponent(id) + "/logs");
      logs.textContent = kept.stdout + kept.stderr;
    }
    const usage = await api("GET", "/tasks/" + encodeURIComponent(id) + "/stats");
    const samples = usage.samples || [];
    graphs.replaceChildren(graph("CPU (CPUs)", samples.map((s) => s.cpu_cores || 0), (v) => v.toFixed(2)),
                           graph("Memory", samples.map((s) => s.memory_bytes || 0), bytes),
                           graph("Processes", samples.map((s) => s.pids || 0), (v) => String(v)));
  });
}

// MARK: actors

function actorsView() {
  const body = el("tbody");
  show(el("h1", {}, "Actors"), table(["Name", "Namespace", "Status", "Image", "Workers", "Message"], body));
  every(2, async () => {
    const page = await api("GET", "/actors?limit=1000");
    body.replaceChildren(...page.actors.map((a) => el("tr", { "data-actor": a.id },
      el("td", {}, el("a", { href: "#/actors/" + encodeURIComponent(a.id) }, a.name)),
      el("td", {}, a.namespace || "default"),
      stateCell(a.status), el("td", {}, a.image), el("td", { class: "num" }, (a.min_workers || 0) + "–" + (a.max_workers || 0)), el("td", {}, a.message || ""))));
    setStatus(page.total + " actors");
  });
}

function actorView(id) {
  const workers = el("tbody");
  const executions = el("tbody");
  const count = el("input", { type: "number", min: 1, value: 1, size: 4, "aria-label": "workers" });
  const scale = el("form", { class: "inline" }, "Workers at least ", count, el("button", { type: "submit" }, "Scale"));
  scale.addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => api("POST", "/actors/" + encodeURIComponent(id) + "/workers", { num: Number(count.value) }));
  });
  const message = el("input", { placeholder: "message", size: 40, "aria-label": "message" });
  const send = el("form", { class: "inline" }, message, el("button", { type: "submit" }, "Send"));
  send.addEventListener("submit", (event) => {
    event.preventDefault();
    act(async () => {
      const response = await fetch(scoped("POST", "/actors/" + encodeURIComponent(id) + "/messages"),
                                   { method: "POST", headers: { "Authorization": "Bearer " + token(), "Content-Type": "text/plain" }, body: message.value });
      if (!response.ok) throw new Error((await response.json()).error);
    });
  });
  show(el("p", {}, el("a", { href: "#/actors" }, "← Actors")), el("h1", { id: "actor-title" }, id), scale, send,
       el("h2", {}, "Workers"), table(["Worker", "Status", "Proplet", "Execution"], workers),
       el("h2", {}, "Executions"), table(["Execution", "Status", "Exit code", "Worker", "Error", "Started"], executions));
  every(2, async () => {
    const a = await api("GET", "/actors/" + encodeURIComponent(id));
    document.getElementById("actor-title").textContent = a.name;
    const w = await api("GET", "/actors/" + encodeURIComponent(id) + "/workers");
    workers.replaceChildren(...w.workers.map((x) => el("tr", {}, el("td", {}, x.id), stateCell(x.status), el("td", {}, x.proplet_id || "-"), el("td", {}, x.execution_id || ""))));
    const e = await api("GET", "/actors/" + encodeURIComponent(id) + "/executions?limit=20");
    executions.replaceChildren(...e.executions.map((x) => el("tr", {}, el("td", {}, x.id), stateCell(x.status), el("td", {}, x.exit_code === undefined ? "-" : x.exit_code),
                                                            el("td", {}, x.worker_id || "-"), el("td", {}, x.error || ""), el("td", {}, ago(x.started_at)))));
  });
}

// MARK: routing

function route() {
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = null;
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  setStatus("");
  const hash = location.hash || "#/tasks";
  if (!token() || hash === "#/sign-in") return signInView();
  document.getElementById("nav").hidden = false;
  if (!document.getElementById("namespace").options.length) loadNamespaces().catch((e) => { if (e.message !== "unauthorized") showError(e); });
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", hash.startsWith(link.getAttribute("href")));
  const [, section, id] = hash.split("/");
  if (section === "proplets") return fleetView();
  if (section === "actors") return id ? actorView(decodeURIComponent(id)) : actorsView();
  return id ? taskView(decodeURIComponent(id)) : tasksView();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  document.getElementById("namespace").addEventListener("change", (event) => {
    sessionStorage.setItem(namespaceKey, event.target.value);
    // A task or actor of the namespace left behind is not in the one picked: back to its list.
    const [, section] = (location.hash || "#/tasks").split("/");
    const list = "#/" + (section === "actors" || section === "proplets" ? section : "tasks");
    if (location.hash !== list) location.hash = list; else route();
  });
  window.addEventListener("hashchange", () => route());
  route();
});
