// The node dashboard: reads the admin plane (never acts), renders with textContent only.
"use strict";

const WINDOW_MS = 10 * 60 * 1000;  // the restart timeline's width
const MAX_EVENTS = 200;
const marks = [];                  // {service, at, kind}: crashes and respawns seen
const lastRestarts = new Map();    // service -> restarts in the previous /version

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function getJson(path) {
  const resp = await fetch(path, {cache: "no-store"});
  return {status: resp.status, body: await resp.json()};
}

function uptime(s) {
  if (!s) return "-";
  s = Math.floor(s);
  if (s >= 3600) return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  if (s >= 60) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return s + "s";
}

function mark(service, kind, ts) {
  const at = (ts && Date.parse(ts)) || Date.now();  // replayed history keeps its own time
  marks.push({service, at, kind});
  marks.sort((a, b) => a.at - b.at);
  while (marks.length > 500 || (marks.length && marks[0].at < Date.now() - WINDOW_MS)) marks.shift();
}

function renderServices(services) {
  const body = document.querySelector("#services tbody");
  const rows = [];
  for (const svc of services) {
    const before = lastRestarts.get(svc.name);
    if (before !== undefined && svc.restarts > before) mark(svc.name, "respawned");
    lastRestarts.set(svc.name, svc.restarts);
    const tr = el("tr");
    tr.dataset.service = svc.name;
    tr.appendChild(el("td", svc.name, "name"));
    const state = el("td", null, "state");
    state.appendChild(el("span", svc.held ? "stopped (operator)" : svc.state, "state-" + svc.state));
    tr.appendChild(state);
    tr.appendChild(el("td", svc.pid === null ? "-" : svc.pid, "pid"));
    tr.appendChild(el("td", svc.restarts, "restarts"));
    tr.appendChild(el("td", uptime(svc.uptime), "uptime"));
    tr.appendChild(el("td", svc.last_crash || "-", "crash"));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function renderTimeline(services) {
  const now = Date.now();
  const lanes = [];
  for (const svc of services) {
    const row = el("div", null, "row");
    row.appendChild(el("span", svc.name));
    const lane = el("div", null, "lane");
    for (const m of marks.filter((x) => x.service === svc.name)) {
      const dot = el("span", null, "dot " + m.kind);
      dot.title = m.kind + " " + new Date(m.at).toLocaleTimeString();
      dot.style.left = Math.min(99, 100 * (1 - (now - m.at) / WINDOW_MS)).toFixed(2) + "%";
      lane.appendChild(dot);
    }
    row.appendChild(lane);
    lanes.push(row);
  }
  document.getElementById("timeline").replaceChildren(...lanes);
}

async function refreshNode() {
  try {
    const [version, ready] = await Promise.all([getJson("/version"), getJson("/readyz")]);
    const v = version.body;
    document.getElementById("profile").textContent = v.profile + (v.amnesia ? " (amnesia)" : "");
    document.getElementById("node-id").textContent = v.node_id || "";
    document.getElementById("config").textContent = "config v" + v.config_version + " · pq " + v.pq;
    const badge = document.getElementById("readiness");
    const isReady = ready.status === 200;
    badge.textContent = isReady ? "ready" : "degraded: " + (ready.body.missing || []).join(", ");
    badge.className = "badge " + (isReady ? "ready" : "degraded");
    renderServices(v.services || []);
    renderTimeline(v.services || []);
    document.getElementById("footer").textContent =
      "read-only: this page cannot change the node · updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("readiness").textContent = "unreachable";
    document.getElementById("readiness").className = "badge degraded";
  }
}

function sample(text, name) {
  let total = null;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") || line.startsWith(name + " ")) {
      total = (total || 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

async function refreshStore() {
  try {
    const text = await (await fetch("/metrics", {cache: "no-store"})).text();
    const used = sample(text, "storage_bytes");
    const quota = sample(text, "storage_quota_bytes");
    const objects = sample(text, "storage_objects");
    const bar = document.getElementById("store-bar");
    if (used === null || !quota) {
      document.getElementById("store-text").textContent = "this node runs no store";
      return;
    }
    const share = Math.min(1, used / quota);
    bar.style.width = (100 * share).toFixed(1) + "%";
    bar.className = share > 0.9 ? "full" : "";
    document.getElementById("store-text").textContent =
      bytes(used) + " of " + bytes(quota) + " (" + (100 * share).toFixed(1) + "%), " + objects + " objects";
  } catch (err) { /* the next refresh tries again */ }
}

async function refreshPeers() {
  const list = document.getElementById("peers");
  try {
    const {status, body} = await getJson("/peers");
    if (status !== 200) { list.replaceChildren(el("li", "no overlay on this node", "muted")); return; }
    const items = body.peers.map((p) =>
      el("li", String(p.node_id).slice(0, 21) + "… " + (p.direction === "in" ? "in " : "") + p.state +
        (p.last_error ? " (" + p.last_error + ")" : "")));
    list.replaceChildren(...(items.length ? items : [el("li", "no peers configured", "muted")]));
  } catch (err) { /* the next refresh tries again */ }
}

async function refreshDht() {
  const text = document.getElementById("dht-text");
  try {
    const {status, body} = await getJson("/dht");
    if (status !== 200) { text.textContent = "this node runs no DHT"; return; }
    const metrics = await (await fetch("/metrics", {cache: "no-store"})).text();
    const missing = sample(metrics, "ron_dht_missing_records") || 0;
    text.textContent = body.contacts + " contacts · " + body.records + " records held (" +
      body.provider_records + " provider, " + body.peer_records + " peer) · providing " +
      body.providing + (missing ? " (" + missing + " missing)" : "") + " · " +
      body.lookups_per_minute + " lookups/min · hops p95 " + body.hops_p95;
    text.className = missing ? "degraded" : "";
    const bars = body.buckets.map(([index, count]) => {
      const bar = el("div", null, "bucket");
      bar.title = "bucket " + index + ": " + count + " contacts";
      bar.style.height = Math.max(2, 3 * count) + "px";
      return bar;
    });
    document.getElementById("dht-buckets").replaceChildren(...bars);
  } catch (err) { /* the next refresh tries again */ }
}

function showEvent(ev) {
  if (ev.type === "Health" && ev.ok) return;  // heartbeats
  let text = (ev.ts || "") + " " + ev.type;
  let cls = "";
  if (ev.type === "Supervisor") {
    text += " " + ev.event + " " + (ev.service || "");
    if (ev.event === "respawned") mark(ev.service, "respawned", ev.ts);
    if (ev.event === "service_quarantined") cls = "quarantine";
  } else if (ev.type === "ServiceCrashed") {
    text += " " + ev.service + " (" + ev.reason + ")";
    mark(ev.service, "crash", ev.ts);
    cls = "crash";
  } else {
    const {ts, type, ...rest} = ev;
    text += " " + JSON.stringify(rest);
  }
  const list = document.getElementById("events");
  list.prepend(el("li", text, cls));
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

let replayed = false;  // history once per page: a reconnect does not repeat it

async function streamEvents() {
  for (;;) {
    try {
      // history=1: the restarts before the page was opened come first (the timeline's past)
      const resp = await fetch("/events?topic=kernel&history=" + (replayed ? 0 : 1), {cache: "no-store"});
      replayed = true;
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, {stream: true});
        let cut;
        while ((cut = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, cut);
          buffered = buffered.slice(cut + 1);
          if (line) showEvent(JSON.parse(line));
        }
      }
    } catch (err) { /* reconnect below */ }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

refreshNode(); refreshStore(); refreshPeers(); refreshDht(); streamEvents();
setInterval(refreshNode, 1000);
setInterval(refreshStore, 5000);
setInterval(refreshPeers, 5000);
setInterval(refreshDht, 5000);
