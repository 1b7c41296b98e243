// Drives the official ResClient (npm "resclient") against a gateway, for
// tests/test_resclient.py.
//
//   node scenario.mjs WS_URL MODEL_RID COLLECTION_RID [TIMEOUT_MS]
//
// It gets the model and the collection, listens for their events and prints
// one JSON object per line on stdout for every observation:
//
//   {"initial": {"model": ..., "collection": ...}}   what client.get resolved with
//   {"ready": true}                                   listeners are attached
//   {"event": "change", "rid", "changed", "model"}    a model change (old values, new state)
//   {"event": "add"|"remove", "rid", "idx", "item", "collection"}
//   {"custom": NAME, "rid", "defined", "data"}      a custom event (CUSTOM_EVENT): whether
//                                                     its data was defined, and the data
//   {"call": result, "model": ...}                    a call's result, and the model
//                                                     as the client held it right then
//   {"callError": {...}}                              a call that failed
//   {"snapshot": {"model": ..., "collection": ...}}
//   {"error": "..."}                                  then exits non-zero
//
// The test drives it through stdin, one JSON command per line:
//   {"cmd": "call", "rid", "method", "params"}, {"cmd": "snapshot"}, {"cmd": "exit"}.
// Closing stdin ends it too. It exits non-zero on any error, and after
// TIMEOUT_MS (default 20000) whatever it is doing.

import { createRequire } from "node:module";
import readline from "node:readline";

import WebSocket from "ws";
import resclient from "resclient";

const require = createRequire(import.meta.url);
const ResRef = require("resclient/lib/class/ResRef.js").default;
const ResClient = resclient.default;
const { ResModel, ResCollection } = resclient;

const [url, modelRid, collectionRid, timeoutArg] = process.argv.slice(2);
if (!url || !modelRid || !collectionRid) {
  process.stderr.write("usage: node scenario.mjs WS_URL MODEL_RID COLLECTION_RID [TIMEOUT_MS]\n");
  process.exit(64);
}
const timeoutMs = Number(timeoutArg || 20000);

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + "\n");
}

function fail(message) {
  emit({ error: String(message) });
  process.exit(1);
}

const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
process.on("uncaughtException", (err) => fail(err && err.stack ? err.stack : err));
process.on("unhandledRejection", (err) => fail(err && err.stack ? err.stack : JSON.stringify(err)));

// A plain JSON picture of a value as ResClient holds it: a referenced
// resource becomes {"rid", "model"|"collection"}, a soft reference {"softRid"}.
function plain(value, seen = new Set()) {
  if (value instanceof ResModel || value instanceof ResCollection) {
    const rid = value.getResourceId();
    if (seen.has(rid)) {
      return { rid };
    }
    const inner = new Set(seen).add(rid);
    if (value instanceof ResModel) {
      const model = {};
      for (const [k, v] of Object.entries(value.props)) {
        model[k] = plain(v, inner);
      }
      return { rid, model };
    }
    return { rid, collection: value.toArray().map((v) => plain(v, inner)) };
  }
  if (value instanceof ResRef) {
    return { softRid: value.rid };
  }
  return value === undefined ? null : value;
}

function errorOf(err) {
  if (err && typeof err === "object" && "code" in err) {
    return { code: err.code, message: err.message, data: err.data };
  }
  return { message: String(err && err.stack ? err.stack : err) };
}

const client = new ResClient(() => new WebSocket(url));
client.on("error", (err) => process.stderr.write(`resclient error: ${JSON.stringify(errorOf(err))}\n`));

let model;
let collection;

function state() {
  return { model: plain(model).model, collection: plain(collection).collection };
}

async function handle(command) {
  switch (command.cmd) {
    case "call":
      try {
        const result = await client.call(command.rid, command.method, command.params);
        emit({ call: plain(result), model: plain(model).model });
      } catch (err) {
        emit({ callError: errorOf(err) });
      }
      break;
    case "snapshot":
      emit({ snapshot: state() });
      break;
    case "exit":
      emit({ snapshot: state() });
      clearTimeout(timer);
      await client.disconnect();
      process.exit(0);
      break;
    default:
      fail(`unknown command ${JSON.stringify(command)}`);
  }
}

// Listeners go on as soon as each get resolves: ResClient unsubscribes a
// resource that nothing listens to (after its unsubscribeDelay).
// The custom event listened for on both resources, to see the payload as
// ResClient hands it on: undefined (no data member) and null differ here.
const CUSTOM_EVENT = "myEvent";

function listenCustom(resource, rid) {
  resource.on(CUSTOM_EVENT, (data) => {
    emit({ custom: CUSTOM_EVENT, rid, defined: data !== undefined, data: data === undefined ? null : data });
  });
}

function onModel(resource) {
  if (!(resource instanceof ResModel)) fail(`${modelRid} is not a model`);
  model = resource;
  listenCustom(model, modelRid);
  model.on("change", (changed) => {
    const old = {};
    for (const [k, v] of Object.entries(changed)) {
      old[k] = plain(v);
    }
    emit({ event: "change", rid: modelRid, changed: old, model: plain(model).model });
  });
}

function onCollection(resource) {
  if (!(resource instanceof ResCollection)) fail(`${collectionRid} is not a collection`);
  collection = resource;
  listenCustom(collection, collectionRid);
  for (const name of ["add", "remove"]) {
    collection.on(name, (ev) => {
      emit({ event: name, rid: collectionRid, idx: ev.idx, item: plain(ev.item),
             collection: plain(collection).collection });
    });
  }
}

try {
  await Promise.all([client.get(modelRid).then(onModel), client.get(collectionRid).then(onCollection)]);
} catch (err) {
  fail(`get failed: ${JSON.stringify(errorOf(err))}`);
}
emit({ initial: state() });
emit({ ready: true });

// Commands run one after another, in the order they came.
let queue = Promise.resolve();
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    fail(`bad command line ${JSON.stringify(line)}`);
  }
  queue = queue.then(() => handle(command));
});
lines.on("close", () => {
  queue.then(() => fail("stdin closed before an exit command"));
});
