"use strict";
// The cabinet console: log in, then one server-sent event stream of the agent's status.
// No framework, no build step. Text goes into the page as text (never as HTML).
const $ = (id) => document.getElementById(id);
let me = null, stream = null, zone = "UTC", last = null;

function el(tag, attrs, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") n.className = v; else if (k === "text") n.textContent = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v); else if (v !== false && v != null) n.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) n.append(k);
  return n;
}
function say(text, info) { const m = $("message"); m.textContent = text; m.className = info ? "info" : ""; m.hidden = !text; }
function fmt(v) { return v == null ? "–" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v); }
function local(t) {
  if (t == null) return "–";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  if (isNaN(d)) return String(t);
  return d.toLocaleString("sv-SE", { timeZone: zone, hour12: false }).slice(0, 16);
}
function age(s) { return s == null ? "–" : s < 90 ? s.toFixed(1) + " s" : s < 5400 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h"; }

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (me) headers["X-CSRF-Token"] = me.csrf;
  const r = await fetch(path, { method, headers, credentials: "same-origin", body: body ? JSON.stringify(body) : undefined });
  const doc = await r.json().catch(() => ({}));
  if (r.status === 401 && me) loggedOut("session ended: " + (doc.error || "log in again"));
  if (!r.ok) throw new Error(doc.error || r.status + " " + r.statusText);
  return doc;
}
async function act(path, body, done) {
  try { await api("POST", path, body); say(done, true); } catch (e) { say(e.message); }
}

function loggedOut(why) {
  me = null; if (stream) stream.close(); stream = null;
  $("console").hidden = true; $("setpw").hidden = true; $("logout").hidden = true; $("login").hidden = false; $("who").textContent = "";
  $("live").textContent = "offline"; $("live").className = "badge";
  if (why) say(why);
}
function loggedIn(doc) {
  me = doc; say("");
  $("login").hidden = true; $("logout").hidden = false;
  $("who").textContent = doc.user + " (" + doc.role + ")";
  $("setpw").hidden = !doc.must_set_password; $("console").hidden = doc.must_set_password;
  if (doc.must_set_password) return;
  pollScan();
  document.body.classList.toggle("viewer", doc.role !== "technician");
  for (const b of document.querySelectorAll("button.tech, input.tech")) b.disabled = doc.role !== "technician";
  connect();
}
function connect() {
  if (stream) stream.close();
  stream = new EventSource("/api/events");
  stream.addEventListener("status", (e) => { $("live").textContent = "live"; $("live").className = "badge ok"; render(JSON.parse(e.data)); });
  stream.addEventListener("expired", (e) => loggedOut(JSON.parse(e.data)));
  stream.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "badge"; api("GET", "/api/session").catch(() => {}); };
}

const tech = () => me && me.role === "technician";

function render(s) {
  last = s;
  zone = (s.cabinet && s.cabinet.timezone) || "UTC";
  $("title").textContent = (s.cabinet.name || "Cabinet") + " · " + s.cabinet.id;
  const c = s.controls || {};
  renderAlarms(c.alarms || []);
  renderLighting(c.lighting);
  renderClimate(c.climate);
  renderBuses(s.buses || []);
  scanBuses(s.buses || []);
  renderUplink(s);
  renderClock(s, c);
  renderPoints(s.points || []);
}

function rows(section, items) {
  const body = $(section).querySelector(".body");
  body.replaceChildren(...(items.length ? items : [el("p", { class: "muted", text: "nothing to show" })]));
}

// keyed rows: built once, their text updated; forms inside keep what the user typed
function keyed(section, key, items, build, update) {
  const body = $(section).querySelector(".body");
  const seen = new Set();
  for (const it of items) {
    const k = String(it[key]); seen.add(k);
    let row = body.querySelector(`[data-key="${CSS.escape(k)}"]`);
    if (!row) { row = build(it); row.dataset.key = k; body.append(row); }
    update(row, it);
  }
  for (const row of [...body.children]) if (!seen.has(row.dataset.key)) row.remove();
  if (!items.length) body.replaceChildren(el("p", { class: "muted", text: "none" }));
}

function renderAlarms(list) {
  keyed("alarms", "id", list, (a) => el("div", { class: "row", "data-alarm": a.id },
    el("span", { class: "name", text: a.id }), el("span", { class: "state" }), el("span", { class: "grow msg" }),
    el("button", { class: "ack", onclick: () => act("/api/alarms/ack", { id: a.id }, "alarm " + a.id + " acknowledged") }, "Acknowledge")),
  (row, a) => {
    row.querySelector(".state").textContent = a.severity + ", " + a.state;
    row.querySelector(".state").className = "state " + (a.state === "acknowledged" ? "muted" : a.severity);
    row.querySelector(".msg").textContent = (a.message || a.source || "") + " · since " + local(a.since);
    row.querySelector(".ack").disabled = !tech() || a.state === "acknowledged";
  });
}

function segForm(seg) {
  const on = el("select", { class: "on", "aria-label": "switch " + seg }, el("option", { value: "on", text: "on" }), el("option", { value: "off", text: "off" }));
  const level = el("input", { class: "level", type: "number", min: 0, max: 100, placeholder: "level %", "aria-label": "level of " + seg });
  const minutes = el("input", { class: "minutes", type: "number", min: 1, value: 60, "aria-label": "minutes for " + seg });
  const set = el("button", { class: "set", onclick: () => {
    const body = { segments: [seg], on: on.value === "on", minutes: Number(minutes.value) };
    if (level.value !== "") body.level = Number(level.value);
    act("/api/lighting/override", body, "override set on " + seg);
  } }, "Override");
  const cancel = el("button", { class: "cancel", onclick: () => act("/api/lighting/cancel", { segments: [seg] }, "override on " + seg + " cancelled") }, "Cancel");
  return el("div", { class: "act" }, on, level, minutes, el("span", { class: "muted", text: "min" }), set, cancel);
}

function renderLighting(l) {
  if (!l) { rows("lighting", []); return; }
  const segs = Object.values(l.segments || {});
  const body = $("lighting").querySelector(".body");
  let night = body.querySelector(".night");
  if (!night) { night = el("p", { class: "night muted" }); body.prepend(night); }
  const n = l.night || {};
  night.textContent = "mode " + l.mode + " · sunset " + local(n.sunset) + " · sunrise " + local(n.sunrise) + " (" + zone + ")";
  for (const s of segs) {
    let row = body.querySelector(`[data-seg="${CSS.escape(s.segment)}"]`);
    if (!row) {
      row = el("div", { class: "row", "data-seg": s.segment }, el("span", { class: "name", text: s.segment }), el("span", { class: "state" }), el("span", { class: "grow why" }), segForm(s.segment));
      body.append(row);
    }
    const ov = (l.overrides || {})[s.segment];
    const st = row.querySelector(".state");
    st.textContent = (s.on ? "ON" : "off") + (s.level != null ? " " + fmt(s.level) + " %" : "");
    st.className = "state " + (s.on ? "on" : "muted");
    row.querySelector(".why").textContent = s.reason + (s.detail ? " (" + s.detail + ")" : "") +
      (ov ? " · override by " + ov.source + (ov.forever ? ", no expiry" : ", until " + local(ov.expires)) : "");
    for (const b of row.querySelectorAll(".act > *")) b.disabled = !tech();
  }
}

function renderClimate(c) {
  if (!c) { rows("climate", []); return; }
  const items = [el("div", { class: "row" }, el("span", { class: "name", text: c.mode }),
    el("span", { class: "grow", text: "temperature " + fmt(c.temperature) + " °C · humidity " + fmt(c.humidity) + " %RH · dew point " + fmt(c.dew_point) + " °C" }))];
  for (const [point, o] of Object.entries(c.outputs || {}))
    items.push(el("div", { class: "row" }, el("span", { class: "name", text: point }), el("span", { class: o.on ? "on" : "muted", text: o.on ? "ON" : "off" }), el("span", { class: "grow", text: o.reason || "" })));
  const flags = ["door_open", "flooded", "on_battery", "battery_low", "trip", "fan_failed"].filter((k) => c[k]);
  if (flags.length) items.push(el("div", { class: "row bad", text: flags.join(", ") }));
  rows("climate", items);
}

function renderBuses(buses) {
  const items = [];
  for (const b of buses) {
    items.push(el("div", { class: "row" }, el("span", { class: "name", text: b.name + " (" + b.kind + ")" }), el("span", { class: b.state, text: b.state }),
      el("span", { class: "grow muted", text: (b.reason || "") + " · " + b.completed + " ok, " + b.failures + " failed, " + b.bad_frames + " bad frames" })));
    for (const d of b.devices || [])
      items.push(el("div", { class: "row" }, el("span", { class: "name", text: "  " + d.name }), el("span", { class: d.state, text: d.state }),
        el("span", { class: "grow muted", text: d.profile + " unit " + d.unit + (d.reason ? " · " + d.reason : "") + (d.errors ? " · " + d.errors + " errors" : "") })));
  }
  rows("buses", items);
}

function renderUplink(s) {
  const o = s.outbox || {}, u = s.uplink;
  rows("uplink", [
    el("div", { class: "row" }, el("span", { class: "name", text: "uplink" }), el("span", { class: u ? (u.state === "online" ? "online" : "bad") : "muted", text: u ? u.state : "none configured" }),
      el("span", { class: "grow muted", text: u ? u.broker + (u.reason ? " · " + u.reason : "") : "" })),
    el("div", { class: "row" }, el("span", { class: "name", text: "outbox" }), el("span", { class: "grow", text: o.rows_pending + " rows waiting, " + o.batches_unacked + " batches unacknowledged, oldest " + age(o.oldest_pending_age_s) + (o.disk_full ? " · DISK FULL" : "") })),
  ]);
}

function renderClock(s, c) {
  const a = s.agent || {}, g = s.gps, cfg = s.config || {};
  rows("clock", [
    el("div", { class: "row" }, el("span", { class: "name", text: "clock" }), el("span", { class: "grow", text: local(a.wall_time) + " " + zone + " · " + (c.clock_trusted ? "trusted" : "NOT trusted") + (a.clock_synced === false ? ", not synced" : "") })),
    el("div", { class: "row" }, el("span", { class: "name", text: "GPS" }), el("span", { class: "grow", text: g ? "time " + g.time_quality + " · position " + (g.position_valid ? "valid" : "none") + (g.last_error ? " · " + g.last_error : "") : "none" })),
    el("div", { class: "row" }, el("span", { class: "name", text: "agent" }), el("span", { class: "grow muted", text: "version " + a.version + " · up " + age(a.uptime_s) + " · config v" + cfg.version + " " + String(a.config_sha256 || "").slice(0, 12) + (cfg.trial ? " (on trial)" : "") + (s.ota ? " · OTA " + (s.ota.state || "") : "") })),
  ]);
}

function renderPoints(points) {
  const f = $("filter").value.trim().toLowerCase();
  const shown = points.filter((p) => !f || (p.name + " " + p.unit + " " + p.quality).toLowerCase().includes(f));
  $("count").textContent = "(" + shown.length + " of " + points.length + ")";
  $("rows").replaceChildren(...shown.map((p) => el("tr", { "data-point": p.name },
    el("td", { text: p.name }), el("td", { class: "num value", text: fmt(p.value) }), el("td", { text: p.unit }),
    el("td", { class: p.quality, text: p.quality + (p.reason ? " (" + p.reason + ")" : "") }), el("td", { class: "num", text: age(p.age_s) }))));
}

// ---- checks and diagnostics: doctor, config check, log tail (the bundle is a plain link)
function li(cls, ...kids) { return el("li", { class: cls }, ...kids); }
async function runDoctor() {
  const b = $("doctor"); b.disabled = true; $("doctor-state").textContent = "running (up to 2 minutes)…";
  $("doctor-results").replaceChildren();
  try {
    const r = await api("POST", "/api/doctor");
    const n = (k) => r.results.filter((x) => x.status === k).length;
    $("doctor-state").textContent = r.results.length + " checks: " + n("PASS") + " passed, " + n("WARN") + " warnings, " + n("FAIL") + " failed";
    $("doctor-results").replaceChildren(...r.results.map((x) => li("check", el("span", { class: x.status, text: x.status }), " " + x.check + ": " + x.detail,
      x.hint && x.status !== "PASS" ? el("span", { class: "hint", text: "fix: " + x.hint }) : null)));
  } catch (e) { $("doctor-state").textContent = ""; say(e.message); }
  b.disabled = !tech();
}
async function checkConfig(file) {
  const out = $("config-result"); out.replaceChildren(el("p", { class: "muted", text: "checking " + file.name + "…" }));
  try {
    const text = await file.text();
    const r = await fetch("/api/config/check", { method: "POST", credentials: "same-origin", body: text,
      headers: { "Content-Type": "application/toml", "X-CSRF-Token": me.csrf, "X-File-Name": file.name } });
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(doc.error || r.status + " " + r.statusText);
    const lines = text.split(/\r?\n/);
    if (doc.ok) { out.replaceChildren(el("p", { class: "good", text: doc.file + ": " + doc.summary })); return; }
    out.replaceChildren(el("p", { class: "bad", text: doc.file + ": " + doc.issues.length + " error(s)" }),
      el("ul", { class: "results" }, ...doc.issues.map((i) => li("issue", el("b", { text: i.line ? "line " + i.line : "(missing)" }), " " + i.text,
        i.line ? el("span", { class: "line", text: i.line + " | " + (lines[i.line - 1] || "") }) : null))));
  } catch (e) { out.replaceChildren(); say(e.message); }
}
function scanBuses(buses) {  // the bus choices, from the status (an RTU line the agent polls is refused by the agent)
  const sel = $("scan-bus"), names = buses.map((b) => b.name + " (" + b.kind + ")");
  if (sel.dataset.names === names.join()) return;
  sel.dataset.names = names.join();
  sel.replaceChildren(...buses.map((b) => el("option", { value: b.name, text: b.name + " (" + b.kind + ")" })));
}
function showScan(st) {
  const state = $("scan-state");
  if (st.running) state.textContent = "scanning " + st.bus + ": " + st.done + "/" + (st.total ?? "?") + " units, " + st.found + " found";
  else if (st.error) state.textContent = "scan of " + st.bus + ": " + st.error;
  else if (st.bus) state.textContent = "scan of " + st.bus + " (units " + st.units + "): " + (st.devices || []).length + " found" + (st.note ? " · " + st.note : "");
  $("scan-results").replaceChildren(...(st.devices || []).map((d) => li("device", el("b", { text: "unit " + d.unit }), " " + (d.profile || "unknown profile") + " (confidence " + d.confidence.toFixed(2) + ")")));
  $("scan").disabled = !tech() || !!st.running;
}
async function pollScan() {
  try { const st = await api("GET", "/api/scan"); showScan(st); if (st.running) setTimeout(pollScan, 1000); }
  catch (e) { say(e.message); }
}
async function startScan() {
  try { showScan(await api("POST", "/api/scan", { bus: $("scan-bus").value, units: $("scan-units").value })); setTimeout(pollScan, 500); }
  catch (e) { say(e.message); }
}
async function downloadBundle(e) {
  e.preventDefault();  // fetched, then saved from a blob: a refusal is shown here, not as a page of JSON
  try {
    const r = await fetch("/api/bundle", { credentials: "same-origin" });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.status + " " + r.statusText);
    const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [])[1] || "diagnostics.tar.gz";
    const a = el("a", { href: URL.createObjectURL(await r.blob()), download: name });
    document.body.append(a); a.click(); a.remove(); setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    say("diagnostics bundle " + name + " downloaded", true);
  } catch (err) { say(err.message); }
}
let logSeq = 0, logTimer = null;
async function pollLog() {
  clearTimeout(logTimer);
  if (!me || !$("log-open").open) return;
  try {
    const r = await api("GET", "/api/log?after=" + logSeq + "&level=" + $("log-level").value + "&limit=500");
    const pre = $("log-lines"), atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    for (const l of r.lines) pre.append(el("div", { class: l.level.toLowerCase(), text: l.line }));
    while (pre.childElementCount > 500) pre.firstChild.remove();
    logSeq = r.seq; if (atEnd) pre.scrollTop = pre.scrollHeight;
  } catch (e) { say(e.message); }
  logTimer = setTimeout(pollLog, 3000);
}
function resetLog() { logSeq = 0; $("log-lines").replaceChildren(); pollLog(); }

document.addEventListener("DOMContentLoaded", () => {
  $("doctor").addEventListener("click", runDoctor);
  $("bundle").addEventListener("click", downloadBundle);
  $("scan").addEventListener("click", startScan);
  $("config-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) checkConfig(f); e.target.value = ""; });
  $("log-open").addEventListener("toggle", resetLog);
  $("log-level").addEventListener("change", resetLog);
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    try { loggedIn(await api("POST", "/api/login", { user: $("user").value, password: $("password").value })); $("password").value = ""; }
    catch (err) { say(err.message); }
  });
  $("setpw").addEventListener("submit", async (e) => {
    e.preventDefault();
    if ($("newpw").value !== $("newpw2").value) { say("the two passwords differ"); return; }
    try { loggedIn(await api("POST", "/api/password", { password: $("newpw").value })); say("password set", true); }
    catch (err) { say(err.message); }
    $("newpw").value = $("newpw2").value = "";
  });
  $("logout").addEventListener("click", async () => { try { await api("POST", "/api/logout"); } catch (e) { /* gone already */ } loggedOut("logged out"); });
  $("filter").addEventListener("input", () => last && renderPoints(last.points || []));
  api("GET", "/api/session").then(loggedIn, () => loggedOut(""));
});
