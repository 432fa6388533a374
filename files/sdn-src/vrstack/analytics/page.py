"""The operator's page: plain HTML, CSS and a small script, served by the collector.

The files are kept here as text (the package ships only Python files). The page holds
no data itself: its script asks `GET /overview` every few seconds with the token the
operator gave (in the address's fragment, `/ui#token=...`, which browsers never send to
the server, or typed into the form), and draws what comes back with DOM calls only
(`textContent`, never HTML from data). The overview is the fabric's: a project's
read-only Keystone token gets 403 there, and the page says so instead of drawing.
"""

from __future__ import annotations

from aiohttp import web

REFRESH_SECONDS = 5

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vrstack analytics</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/ui/page.css">
<script src="/ui/page.js" defer></script>
</head>
<body>
<header>
  <h1>vrstack <span id="cluster"></span></h1>
  <span id="updated">not loaded yet</span>
  <span id="error" hidden></span>
</header>
<form id="login" hidden>
  <label>Analytics token <input id="token" type="password" autocomplete="off"></label>
  <button type="submit">Show</button>
</form>
<main>
  <section><h2>Alarms</h2><ul id="alarms"></ul></section>
  <section><h2>Fabric</h2><div id="fabric" class="racks"></div></section>
  <section><h2>Control sessions</h2>
    <table id="sessions"><thead><tr><th>agent</th><th>control node</th><th>address</th>
    <th>state</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Networks</h2><div id="networks"></div></section>
  <section><h2>Top flows</h2>
    <table id="flows"><thead><tr><th>network</th><th>source</th><th>destination</th>
    <th>proto</th><th>port</th><th>action</th><th>bytes</th><th>packets</th></tr></thead>
    <tbody></tbody></table></section>
</main>
</body>
</html>
"""

CSS = """
body { font: 14px/1.4 sans-serif; margin: 0; background: #f4f5f7; color: #1d2733; }
header { background: #1d2733; color: #fff; padding: 8px 16px; display: flex; gap: 16px;
  align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
#error { background: #c62828; padding: 2px 8px; border-radius: 3px; }
form { padding: 16px; }
main { padding: 8px 16px; }
section { background: #fff; border-radius: 4px; padding: 8px 12px; margin-bottom: 12px;
  box-shadow: 0 1px 2px rgba(0,0,0,.15); }
h2 { font-size: 15px; margin: 4px 0 8px; }
.racks { display: flex; gap: 12px; flex-wrap: wrap; }
.rack { border: 1px solid #c5cbd3; border-radius: 4px; padding: 6px; min-width: 220px; }
.rack h3 { font-size: 13px; margin: 0 0 6px; color: #55606e; }
.node { border-left: 6px solid #9e9e9e; background: #eef0f3; margin: 4px 0;
  padding: 4px 8px; }
.node .name { font-weight: bold; }
.node .meta { color: #55606e; font-size: 12px; }
.state-up { border-color: #2e7d32; }
.state-initializing, .state-degraded { border-color: #f9a825; }
.state-down { border-color: #c62828; }
.state-silent { border-color: #9e9e9e; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px;
  color: #fff; background: #9e9e9e; margin: 1px 2px; }
.badge.up { background: #2e7d32; }
.badge.initializing, .badge.degraded, .badge.connecting { background: #f9a825; }
.badge.down, .badge.missing, .badge.late { background: #c62828; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid #e1e4e8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#alarms li { color: #c62828; }
.network h3 { font-size: 13px; margin: 8px 0 4px; }
.empty { color: #55606e; font-style: italic; }
"""

JS = """
"use strict";
const REFRESH_MS = __REFRESH__ * 1000;
let token = sessionStorage.getItem("vrstack-token") || "";

// The token may come in the fragment (never sent to the server); keep it for the
// session and take it out of the address bar.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  token = fragment.get("token");
  sessionStorage.setItem("vrstack-token", token);
  history.replaceState(null, "", location.pathname);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function badge(text, state) {
  return el("span", {class: "badge " + state}, text);
}

function fill(target, items, empty) {
  target.replaceChildren(...(items.length ? items : [el("div", {class: "empty"}, empty)]));
}

function fillRows(table, rows, columns, empty) {
  const body = table.tBodies[0];
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: columns, class: "empty"}, empty)));
  } else {
    body.replaceChildren(...rows);
  }
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function drawFabric(racks) {
  fill(document.getElementById("fabric"), racks.map(rack =>
    el("div", {class: "rack", "data-rack": rack.name}, el("h3", {}, rack.name),
      ...rack.nodes.map(node => el("div",
        {class: "node state-" + node.state, "data-node": node.name, "data-state": node.state},
        el("div", {class: "name"}, node.name, " ", badge(node.state, node.state),
          ...(node.alarms ? [badge(node.alarms + (node.alarms > 1 ? " alarms" : " alarm"),
            "down")] : [])),
        el("div", {class: "meta"}, [node.address, node.roles.join(", ")].filter(Boolean)
          .join(" · ")),
        el("div", {}, ...node.services.map(s =>
          badge(s.service + (s.late ? " late" : " " + s.state), s.late ? "late" : s.state))))))),
    "no nodes known yet");
}

function drawSessions(sessions) {
  fillRows(document.getElementById("sessions"), sessions.map(s =>
    el("tr", {"data-session": s.agent + ">" + (s.control || s.peer), "data-state": s.state},
      el("td", {}, s.agent), el("td", {}, s.control || "?"), el("td", {}, s.peer),
      el("td", {}, badge(s.state, s.state)))), 4, "no agent has reported a session");
}

function drawNetworks(networks) {
  fill(document.getElementById("networks"), networks.map(net =>
    el("div", {class: "network", "data-network": net.network},
      el("h3", {}, net.network, " (", net.vrf, ")"),
      el("table", {},
        el("thead", {}, el("tr", {}, ...["VM", "address", "MAC", "compute", "interface",
          "state"].map(h => el("th", {}, h)))),
        el("tbody", {}, ...net.vms.map(vm => el("tr", {"data-vm": vm.vm},
          el("td", {}, vm.vm), el("td", {}, vm.ip), el("td", {}, vm.mac),
          el("td", {}, vm.source), el("td", {}, vm.interface),
          el("td", {}, badge(vm.state, vm.state)))))),
      el("div", {class: "meta"}, "routes: ", net.routes.length ? net.routes.map(r =>
        r.source + " " + r.count).join(", ") : "none reported"))),
    "no VM ports or routes reported in the window");
}

function drawFlows(flows) {
  fillRows(document.getElementById("flows"), flows.map(f =>
    el("tr", {"data-flow": f.src_ip + ">" + f.dst_ip},
      el("td", {}, f.vrf), el("td", {}, f.src_ip), el("td", {}, f.dst_ip),
      el("td", {class: "num"}, f.proto), el("td", {class: "num"}, f.dst_port),
      el("td", {}, f.action), el("td", {class: "num", title: f.bytes}, bytes(f.bytes)),
      el("td", {class: "num"}, f.packets))), 8, "no flows in the window");
}

function drawAlarms(alarms) {
  fill(document.getElementById("alarms"), alarms.map(a =>
    el("li", {"data-alarm": a.id}, a.type, ": ", a.reason)), "no active alarms");
}

function showError(text) {
  const e = document.getElementById("error");
  e.textContent = text;
  e.hidden = !text;
}

async function refresh() {
  if (!token) {
    document.getElementById("login").hidden = false;
    return;
  }
  try {
    const resp = await fetch("/overview", {headers: {"X-Auth-Token": token}});
    if (resp.status === 401) {
      document.getElementById("login").hidden = false;
      showError("the token was refused");
      return;
    }
    if (resp.status === 403) {
      // A project's read-only token: the fabric overview is not its to see.
      const body = await resp.json().catch(() => ({}));
      document.getElementById("login").hidden = false;
      showError("not allowed: " + (body.error || "this token may not see the fabric") +
        " (a project's token can query its own flows and ports at POST /query)");
      return;
    }
    if (!resp.ok) throw new Error("the collector answered " + resp.status);
    const data = await resp.json();
    document.getElementById("login").hidden = true;
    document.getElementById("cluster").textContent = data.cluster;
    drawAlarms(data.alarms);
    drawFabric(data.racks);
    drawSessions(data.sessions);
    drawNetworks(data.networks);
    drawFlows(data.flows);
    document.getElementById("updated").textContent =
      "updated " + new Date(data.now * 1000).toLocaleTimeString();
    document.body.dataset.loaded = String(data.now);
    showError("");
  } catch (err) {
    showError(String(err.message || err));
  }
}

document.getElementById("login").addEventListener("submit", ev => {
  ev.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("vrstack-token", token);
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
""".replace("__REFRESH__", str(REFRESH_SECONDS))

# path -> (content type, body); served without a token (see server.make_app).
FILES: dict[str, tuple[str, str]] = {
    "/ui": ("text/html", HTML),
    "/ui/page.css": ("text/css", CSS),
    "/ui/page.js": ("text/javascript", JS),
}


def response(path: str) -> web.Response:
    content_type, body = FILES[path]
    return web.Response(
        text=body,
        content_type=content_type,
        headers={
            "Cache-Control": "no-cache",
            # Only this page's own files; no inline script, no other origin.
            "Content-Security-Policy": "default-src 'self'; object-src 'none'",
        },
    )
