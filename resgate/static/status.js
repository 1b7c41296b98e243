// The status page: fills itself from /status.json every second.
// Text goes in through textContent only: resource names and reasons come
// from services and clients, never markup.
"use strict";

const POLL_INTERVAL_MS = 1000;
const CHART_WIDTH = 600;
const CHART_HEIGHT = 140;

function show(id, value) {
  document.getElementById(id).textContent = value === null || value === undefined ? "—" : String(value);
}

function duration(seconds) {
  let rest = Math.floor(seconds);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (rest >= size || parts.length) {
      parts.push(Math.floor(rest / size) + unit);
      rest %= size;
    }
  }
  parts.push(rest + "s");
  return parts.join(" ");
}

function replaceRows(id, rows) {
  const parent = document.getElementById(id);
  parent.replaceChildren(...rows);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = String(cell);
    tr.append(td);
  }
  return tr;
}

function item(text) {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

// A line of values scaled to the chart's height, the newest at the right
// edge, on a time axis as wide as the history the gateway keeps.
function points(values, max, capacity) {
  const step = CHART_WIDTH / Math.max(1, capacity - 1);
  const scale = max > 0 ? (CHART_HEIGHT - 4) / max : 0;
  const start = CHART_WIDTH - (values.length - 1) * step;
  return values.map((v, i) => `${(start + i * step).toFixed(1)},${(CHART_HEIGHT - 2 - v * scale).toFixed(1)}`)
    .join(" ");
}

function drawChart(history) {
  for (const [key, id] of [["connections", "chart-connections"], ["eventsPerSecond", "chart-events"]]) {
    const values = history[key];
    const max = Math.max(0, ...values);
    document.getElementById(id).setAttribute("points", points(values, max, history.capacity));
    show(id + "-max", max);
  }
}

function render(status) {
  show("version", status.version);
  show("protocol", status.protocol);
  show("uptime", duration(status.uptime));
  const ready = document.getElementById("ready");
  ready.textContent = status.ready ? "ready" : "not ready: " + status.notReadyReason;
  ready.className = "badge " + (status.ready ? "ready" : "not-ready");
  const note = document.getElementById("workers-note");
  note.hidden = status.workers <= 1;
  note.textContent = `This is the first of ${status.workers} worker processes (--workers): ` +
    "the numbers are its own gateway's, not the other workers'.";

  const nats = status.nats;
  show("nats-state", nats.connected ? "connected" : "not connected");
  show("nats-server", nats.server);
  show("nats-reconnects", nats.reconnects);
  show("nats-last-loss", nats.lastLoss === null ? "never" :
    `${new Date(nats.lastLoss.at * 1000).toLocaleString()}: ${nats.lastLoss.reason}`);

  const clients = status.clients;
  show("ws-connections", clients.websocket);
  show("http-connections", clients.http);
  show("connects-rate", clients.connectsPerSecond);
  show("disconnects-rate", clients.disconnectsPerSecond);
  show("slow-clients", clients.slowClientsCutOff);
  show("refused", clients.refusedPastCaps);

  const traffic = status.traffic;
  show("events-rate", traffic.eventsPerSecond);
  show("requests-rate", traffic.requestsPerSecond);
  show("events-total", traffic.eventsTotal);
  show("requests-total", traffic.requestsTotal);

  show("resources", status.cache.resources);
  show("subscriptions", status.cache.subscriptions);
  replaceRows("top-resources", status.cache.mostSubscribed.map((r) => row([r.name, r.subscriptions])));

  const faults = status.faults;
  show("faults-total", faults.total);
  show("faults-window", faults.window);
  replaceRows("faults", faults.recent.length === 0 ? [item("none")] :
    faults.recent.map((f) => item(`${f.what} ${f.requests}.*: ${f.count}`)));

  drawChart(status.history);
  show("updated", new Date().toLocaleTimeString());
}

async function fetchStatus() {
  try {
    const response = await fetch("/status.json", { cache: "no-store" });
    return response.ok ? await response.json() : null;
  } catch (err) {
    return null;  // the gateway is gone or restarting: said on the page, tried again
  }
}

async function poll() {
  try {
    const status = await fetchStatus();
    if (status === null) {
      const ready = document.getElementById("ready");
      ready.textContent = "gateway not answering";
      ready.className = "badge not-ready";
    } else {
      render(status);
    }
  } finally {
    setTimeout(poll, POLL_INTERVAL_MS);
  }
}

poll();
