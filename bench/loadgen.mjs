// The benchmark's load generator: RES clients over WebSocket (clients.mjs).
//
//   node loadgen.mjs SCENARIO '{"url": "ws://127.0.0.1:PORT/", ...options}'
//
// Runs one scenario, bounded in time, and prints one JSON line of results on
// stdout. Scenarios: echo, fanout, burst, paced, calls, hold, refs (README.md).
// A scenario still running after LIMIT_SECONDS exits with status 3.
// Times are wall-clock milliseconds (performance.timeOrigin + now()), the
// same clock the fake service stamps events with.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { RawClient } from './clients.mjs';

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MODEL = 'bench.model';
const LIMIT_SECONDS = 110; // the runner gives up at 120; option limitSeconds overrides

// A client that agreed on the protocol version, as ResClient does.
async function resClient(url, options) {
  const client = await RawClient.open(url, options);
  await client.call('version', { protocol: '1.2.3' });
  return client;
}

// `count` clients, each connected and set up by `setup`, `concurrency` at a time.
async function openMany(url, count, concurrency, setup, options) {
  const clients = new Array(count);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const client = await resClient(url, options);
      if (setup) await setup(client, i);
      clients[i] = client;
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return clients;
}

// `expected` arrivals: `arrive()` counts one; `all(timeoutMs)` resolves true
// at the last, false at the deadline. Woken by the arrivals themselves, not
// by polling every millisecond, which costs each load generator CPU the
// gateway could have.
function arrivals(expected) {
  let count = 0;
  let finish = null;
  const done = new Promise((resolve) => { finish = resolve; });
  return {
    get count() { return count; },
    arrive() {
      if (++count === expected) finish(true);
    },
    all(timeoutMs) {
      if (count >= expected) return Promise.resolve(true);
      setTimeout(() => finish(false), timeoutMs).unref();
      return done;
    },
  };
}

// A line of JSON on stdout at once (the runner reads it while this goes on).
function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

// The runner's commands on stdin: next(...expected) resolves with the next
// line, which must be one of `expected`.
function commands() {
  const queue = [];
  const waiting = [];
  let buffered = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, end).trim();
      buffered = buffered.slice(end + 1);
      if (waiting.length) waiting.shift()(line);
      else queue.push(line);
    }
  });
  return {
    async next(...expected) {
      const line = queue.length ? queue.shift() : await new Promise((resolve) => waiting.push(resolve));
      if (!expected.includes(line)) throw new Error(`expected ${expected.join(' or ')} on stdin, got ${line}`);
      return line;
    },
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function vmRssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)[1]);
}

// The service's and nats-server's pids, from the runner (option `neighbours`).
let neighbours = {};

// CPU use over a window, in % of one core: the gateway and its neighbours
// (from /proc), this process, and the whole machine (all processes, up to
// 100% x cores).
function cpuMeter(pid) {
  const procTicks = (one) => {
    const stat = readFileSync(`/proc/${one}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime, 1/100 s
  };
  const machine = () => {
    const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const total = ticks.reduce((a, b) => a + b, 0);
    return { busy: total - ticks[3] - ticks[4], total };
  };
  const watched = Object.entries(pid ? { gateway: pid, ...neighbours } : neighbours);
  const start = now();
  const ticks0 = watched.map(([, one]) => procTicks(one));
  const machine0 = machine();
  const own0 = process.cpuUsage();
  return () => {
    const seconds = (now() - start) / 1000;
    const own = process.cpuUsage(own0);
    const m = machine();
    const usage = {
      gateway: null,
      loadgen: (own.user + own.system) / 1e4 / seconds,
      machine: ((m.busy - machine0.busy) / (m.total - machine0.total)) * 100 * cpus().length,
    };
    watched.forEach(([name, one], i) => { usage[name] = (procTicks(one) - ticks0[i]) / seconds; });
    return usage;
  };
}

// Count `client`'s change events of the model, checking their order:
// `tracker` counts deliveries, backwards steps and gaps in `seq`.
function follow(client, tracker, last) {
  client.onEvent = (msg) => {
    if (msg.event !== `${MODEL}.change`) return;
    const values = msg.data.values;
    const seq = values.seq;
    if (seq <= last) tracker.outOfOrder++;
    else if (seq !== last + 1) tracker.gaps++;
    last = seq;
    tracker.received++;
    tracker.event(values, client);
  };
}

async function subscribeModel(client, tracker) {
  const result = await client.call(`subscribe.${MODEL}`);
  follow(client, tracker, result.models[MODEL].seq);
}

function newTracker(event = () => {}) {
  return { received: 0, outOfOrder: 0, gaps: 0, event };
}

const scenarios = {
  // Ceiling: round trips through a trivial echo server, many in flight.
  async echo({ url, clients = 64, inflight = 32, seconds = 3 }) {
    const sockets = await Promise.all(Array.from({ length: clients }, () => RawClient.open(url)));
    const message = JSON.stringify({ event: `${MODEL}.change`, data: { values: { seq: 1, t: now() } } });
    let received = 0;
    let stop = false;
    const cpu = cpuMeter(null);
    const start = now();
    for (const client of sockets) {
      client.received = () => { // each echo is counted and sent back, not read as RES
        received++;
        if (!stop) client.send(message);
      };
      for (let i = 0; i < inflight; i++) client.send(message);
    }
    await sleep(seconds * 1000);
    stop = true;
    const elapsed = (now() - start) / 1000;
    const usage = cpu();
    sockets.forEach((c) => c.close());
    return { received, seconds: elapsed, rate: received / elapsed, cpu: usage };
  },

  // Ceiling: the burst scenario's receiving side, against echo.mjs, which
  // sends `count` events to every client at once.
  async fanout({ url, clients = 200, count = 2000, timeout = 60 }) {
    let first = null;
    let lastArrival = 0;
    const arrived = arrivals(clients * count);
    const tracker = newTracker((values) => {
      if (first === null) first = values.t;
      lastArrival = now();
      arrived.arrive();
    });
    const sockets = await Promise.all(Array.from({ length: clients }, () => RawClient.open(url)));
    sockets.forEach((c) => follow(c, tracker, 0));
    const cpu = cpuMeter(null);
    sockets[0].send(JSON.stringify({ burst: count }));
    const complete = await arrived.all(timeout * 1000);
    const usage = cpu();
    sockets.forEach((c) => c.close());
    const ms = lastArrival - first;
    return { complete, received: tracker.received, ms, rate: tracker.received / (ms / 1000), cpu: usage };
  },

  // 200 clients on one model; `count` change events published at once.
  async burst({ url, pid, clients = 200, count = 2000, timeout = 60 }) {
    let first = null;
    let lastArrival = 0;
    const expected = clients * count;
    const latencies = new Float64Array(expected);
    const arrived = arrivals(expected);
    const tracker = newTracker((values) => {
      if (first === null) first = values.t;
      lastArrival = now();
      latencies[tracker.received - 1] = lastArrival - values.t;
      arrived.arrive();
    });
    const sockets = await openMany(url, clients, 50, (c) => subscribeModel(c, tracker));
    const cpu = cpuMeter(pid);
    await sockets[0].call(`call.${MODEL}.burst`, { count });
    const complete = await arrived.all(timeout * 1000);
    const usage = cpu();
    sockets.forEach((c) => c.close());
    const ms = lastArrival - first;
    const sorted = latencies.subarray(0, Math.min(tracker.received, expected)).sort();
    return {
      complete, expected, received: tracker.received, outOfOrder: tracker.outOfOrder,
      gaps: tracker.gaps, ms, rate: tracker.received / (ms / 1000), cpu: usage,
      p50: percentile(sorted, 50), p99: percentile(sorted, 99),
    };
  },

  // 200 clients on one model; `count` events at `rate` per second; latency.
  async paced({ url, pid, clients = 200, count = 300, rate = 100, timeout = 30 }) {
    const expected = clients * count;
    const latencies = new Float64Array(expected);
    const arrived = arrivals(expected);
    const tracker = newTracker((values) => {
      latencies[tracker.received - 1] = now() - values.t;
      arrived.arrive();
    });
    const sockets = await openMany(url, clients, 50, (c) => subscribeModel(c, tracker));
    const cpu = cpuMeter(pid);
    await sockets[0].call(`call.${MODEL}.paced`, { count, rate });
    const complete = await arrived.all(timeout * 1000);
    const usage = cpu();
    sockets.forEach((c) => c.close());
    const sorted = latencies.subarray(0, Math.min(tracker.received, expected)).sort();
    return {
      complete, expected, received: tracker.received, outOfOrder: tracker.outOfOrder, gaps: tracker.gaps,
      p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: percentile(sorted, 100), cpu: usage,
    };
  },

  // Call round trips: `clients` x `inflight` outstanding calls, for `seconds`.
  async calls({ url, pid, clients = 16, inflight = 4, seconds = 5, warmup = 1 }) {
    // Subscribed first, as a client calling a resource usually is: access is then cached.
    const sockets = await openMany(url, clients, clients, (c) => c.call(`subscribe.${MODEL}`));
    const latencies = [];
    let errors = 0;
    let cpu = null;
    const measureFrom = now() + warmup * 1000;
    const deadline = measureFrom + seconds * 1000;
    setTimeout(() => { cpu = cpuMeter(pid); }, warmup * 1000);
    async function loop(client) {
      for (let n = 0; now() < deadline; n++) {
        const sent = now();
        const msg = await client.request(`call.${MODEL}.ping`, { n });
        if (msg.error) errors++;
        else if (sent >= measureFrom) latencies.push(now() - sent);
      }
    }
    await Promise.all(sockets.flatMap((c) => Array.from({ length: inflight }, () => loop(c))));
    const usage = cpu();
    sockets.forEach((c) => c.close());
    const sorted = Float64Array.from(latencies).sort();
    return {
      calls: sorted.length, errors, seconds, rate: sorted.length / seconds,
      p50: percentile(sorted, 50), p99: percentile(sorted, 99), cpu: usage,
    };
  },

  // One share of many idle subscribed connections, from one loopback source
  // address; several of these processes together hold more connections than
  // one process may open files or one address has ephemeral ports. Steered by
  // the runner on stdin: it prints {ready} (after a warm client, when `warm`),
  // connects on "connect" and prints {connected}, and on "fire" (to the one
  // with the warm client) publishes one event; it prints the arrivals once
  // all its clients got the event or `timeout` passed.
  async hold({ url, pid, clients, concurrency = 100, localAddress, warm = false, timeout = 60 }) {
    const lines = commands();
    const arrived = arrivals(clients + (warm ? 1 : 0));
    let lastArrival = 0;
    let eventTime = null;
    const tracker = newTracker((values) => {
      lastArrival = now();
      eventTime = values.t;
      arrived.arrive();
    });
    const options = localAddress ? { localAddress } : {};
    const first = warm ? await resClient(url, options) : null;
    if (first) await subscribeModel(first, tracker);
    say({ ready: true });
    await lines.next('connect');
    const connectCpu = cpuMeter(pid);
    const connectStart = now();
    const sockets = await openMany(url, clients, concurrency, (c) => subscribeModel(c, tracker), options);
    say({ connected: sockets.length, connectMs: now() - connectStart, connectCpu: connectCpu() });
    const command = await lines.next('fire', 'wait');
    const cpu = cpuMeter(pid);
    if (command === 'fire') await first.call(`call.${MODEL}.burst`, { count: 1 });
    const complete = await arrived.all(timeout * 1000);
    const usage = cpu();
    sockets.forEach((c) => c.close());
    if (first) first.close();
    return { complete, clients, arrived: arrived.count - (first ? 1 : 0), lastArrival, eventTime, cpu: usage };
  },

  // Subscribe a collection of 1,000 references: cold (new tags), then warm.
  async refs({ url, pid, tag, cold = 3, warm = 15 }) {
    async function timedSubscribe(rid) {
      const client = await resClient(url);
      const start = now();
      const result = await client.call(`subscribe.${rid}`);
      const ms = now() - start;
      const resources = Object.keys(result.collections || {}).length + Object.keys(result.models || {}).length;
      return { client, ms, resources };
    }
    const holders = [];
    const coldCpu = cpuMeter(pid);
    const coldMs = [];
    const warmMs = [];
    const resources = [];
    for (let i = 0; i < cold; i++) {
      const r = await timedSubscribe(`bench.refs.${tag}-${i}`);
      holders.push(r.client); // keeps the tree cached
      coldMs.push(r.ms);
      resources.push(r.resources);
    }
    const coldUsage = coldCpu();
    for (let i = 0; i < warm; i++) {
      const r = await timedSubscribe(`bench.refs.${tag}-0`);
      r.client.close();
      warmMs.push(r.ms);
      resources.push(r.resources);
    }
    holders.forEach((c) => c.close());
    const median = (xs) => Float64Array.from(xs).sort()[Math.floor(xs.length / 2)];
    return { coldMs, warmMs, coldMedian: median(coldMs), warmMedian: median(warmMs), resources, coldCpu: coldUsage };
  },
};

const [name, json] = process.argv.slice(2);
const scenario = scenarios[name];
if (!scenario) {
  console.error(`usage: node loadgen.mjs (${Object.keys(scenarios).join('|')}) '{"url": ...}'`);
  process.exit(2);
}
const options = JSON.parse(json || '{}');
neighbours = options.neighbours ?? {};
const limitSeconds = options.limitSeconds ?? LIMIT_SECONDS;
setTimeout(() => {
  console.error(`${name}: no result after ${limitSeconds} s (a response or event never came)`);
  process.exit(3);
}, limitSeconds * 1000).unref();
try {
  const result = await scenario(options);
  console.log(JSON.stringify(result));
  process.exit(0);
} catch (error) {
  console.error(error.stack || String(error));
  process.exit(1);
}
