// Drives headless Chromium (Debian's /usr/bin/chromium) with playwright-core,
// for tests/test_examples.py.
//
//   node driver.mjs ARTIFACT_DIR [TIMEOUT_MS]
//
// Commands come on stdin, one JSON object per line, and run one after
// another; each gets one JSON line on stdout:
//
//   {"id": 1, "cmd": "goto", "page": "a", "url": "http://..."}
//   -> {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": "..."}
//
// Pages are named by the test; "open" makes one in a browser context of the
// given name (pages of one context share cookies and localStorage, two
// contexts are two separate users). Commands:
//
//   open {page, context}                 a new page in that context
//   goto {page, url}                     load a URL (waits for "load")
//   reload {page}
//   fill {page, selector, value}         set an input's value (fires "input")
//   type {page, selector, text}         clear an input, then type key by key
//   click {page, selector}
//   waitText {page, selector, text}      until the element's text contains text
//   waitNoText {page, selector, text}    until it no longer does
//   waitValue {page, selector, value}    until an input's value equals value
//   waitVisible {page, selector}         until an element matching it is visible
//   waitGone {page, selector}            until no element matches
//   text {page, selector}                an element's textContent
//   count {page, selector}               how many elements match
//   evaluate {page, expression}          the value of a JS expression in the page
//   cookies {context}                    the context's cookies
//   screenshot {page, name}              ARTIFACT_DIR/name.png (full page)
//   log {page}                           console messages and page errors so far
//   exit                                 close the browser and exit 0
//
// Waits are bounded by "timeout" (ms) in the command, 10000 by default. The
// whole process exits non-zero after TIMEOUT_MS (default 120000) whatever
// it is doing, and when stdin closes.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";

import { chromium } from "playwright-core";

const [artifactDir, timeoutArg] = process.argv.slice(2);
if (!artifactDir) {
  process.stderr.write("usage: node driver.mjs ARTIFACT_DIR [TIMEOUT_MS]\n");
  process.exit(64);
}
const timeoutMs = Number(timeoutArg || 120000);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const DEFAULT_WAIT = 10000;

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

let browser = null;

async function shutdown(code) {
  try {
    if (browser) await browser.close();
  } catch (err) {
    // Exiting anyway.
  }
  process.exit(code);
}

const timer = setTimeout(() => {
  process.stderr.write(`driver: timed out after ${timeoutMs} ms\n`);
  shutdown(2);
}, timeoutMs);

fs.mkdirSync(artifactDir, { recursive: true });

// playwright-core's launch gives Chromium a fresh --user-data-dir of its own
// (a temporary directory, removed on close), and every named context starts
// with no cookies or storage.
browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

const contexts = new Map();
const pages = new Map();
const logs = new Map();

async function context(name) {
  if (!contexts.has(name)) {
    contexts.set(name, await browser.newContext({ viewport: { width: 900, height: 640 } }));
  }
  return contexts.get(name);
}

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page named ${JSON.stringify(name)}`);
  return p;
}

function wait(command) {
  return { timeout: command.timeout || DEFAULT_WAIT };
}

const handlers = {
  async open(c) {
    const p = await (await context(c.context || "default")).newPage();
    const log = [];
    p.on("console", (m) => log.push(`console.${m.type()}: ${m.text()}`));
    p.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
    pages.set(c.page, p);
    logs.set(c.page, log);
    return null;
  },
  async goto(c) {
    const response = await page(c.page).goto(c.url, { waitUntil: "load", ...wait(c) });
    return response ? response.status() : null;
  },
  async reload(c) {
    await page(c.page).reload({ waitUntil: "load", ...wait(c) });
    return null;
  },
  async fill(c) {
    await page(c.page).fill(c.selector, c.value, wait(c));
    return null;
  },
  async type(c) {
    // Clears the input, then presses one key per character.
    const locator = page(c.page).locator(c.selector);
    await locator.fill("", wait(c));
    await locator.pressSequentially(c.text, { delay: c.delay || 10, ...wait(c) });
    return null;
  },
  async click(c) {
    await page(c.page).click(c.selector, wait(c));
    return null;
  },
  async waitText(c) {
    await page(c.page).waitForFunction(
      ([sel, text]) => {
        const el = document.querySelector(sel);
        return !!el && el.textContent.includes(text);
      },
      [c.selector, c.text], { polling: 50, ...wait(c) });
    return await page(c.page).textContent(c.selector);
  },
  async waitNoText(c) {
    await page(c.page).waitForFunction(
      ([sel, text]) => {
        const el = document.querySelector(sel);
        return !!el && !el.textContent.includes(text);
      },
      [c.selector, c.text], { polling: 50, ...wait(c) });
    return await page(c.page).textContent(c.selector);
  },
  async waitValue(c) {
    await page(c.page).waitForFunction(
      ([sel, value]) => {
        const el = document.querySelector(sel);
        return !!el && el.value === value;
      },
      [c.selector, c.value], { polling: 50, ...wait(c) });
    return null;
  },
  async waitVisible(c) {
    await page(c.page).waitForSelector(c.selector, { state: "visible", ...wait(c) });
    return null;
  },
  async waitGone(c) {
    await page(c.page).waitForFunction(
      (sel) => !document.querySelector(sel), c.selector, { polling: 50, ...wait(c) });
    return null;
  },
  async text(c) {
    return await page(c.page).textContent(c.selector, wait(c));
  },
  async count(c) {
    return await page(c.page).locator(c.selector).count();
  },
  async evaluate(c) {
    return await page(c.page).evaluate(c.expression);
  },
  async cookies(c) {
    return await (await context(c.context || "default")).cookies();
  },
  async screenshot(c) {
    const file = path.join(artifactDir, `${c.name}.png`);
    await page(c.page).screenshot({ path: file, fullPage: true });
    return file;
  },
  async log(c) {
    return logs.get(c.page) || [];
  },
  async exit() {
    clearTimeout(timer);
    emit({ id: null, ok: true, result: "bye" });
    await shutdown(0);
  },
};

async function handle(command) {
  const handler = handlers[command.cmd];
  if (!handler) {
    emit({ id: command.id, ok: false, error: `unknown command ${JSON.stringify(command.cmd)}` });
    return;
  }
  try {
    const result = await handler(command);
    emit({ id: command.id, ok: true, result: result === undefined ? null : result });
  } catch (err) {
    emit({ id: command.id, ok: false, error: String(err && err.message ? err.message : err) });
  }
}

emit({ id: 0, ok: true, result: { ready: true, version: browser.version() } });

let queue = Promise.resolve();
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    emit({ id: null, ok: false, error: `bad command line ${JSON.stringify(line)}` });
    return;
  }
  queue = queue.then(() => handle(command));
});
lines.on("close", () => {
  queue.then(() => shutdown(0));
});
