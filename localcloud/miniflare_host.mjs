// One Miniflare (one workerd) serving every Worker of a forkstage local cloud.
//
// Started by localcloud/workers_host.py as `node miniflare_host.mjs` with a JSON config on stdin
// ({control, ready_file, node_modules}). It listens on a Unix socket (`control`, in a private
// folder) for one JSON request per connection and answers one JSON line:
//   {"op": "put", "worker": {name, script, main_module, compatibility_date,
//                            compatibility_flags, bindings, hyperdrives, port, fingerprint}}
//   {"op": "delete", "name": ...}      {"op": "list"}      {"op": "shutdown"}
// Connection strings (passwords) come only this way, never argv or env, and every line printed
// goes through redact().
//
// Each Worker keeps its own loopback port (its URL) for as long as it exists: a small HTTP
// front of ours listens there and forwards to the Worker's socket in workerd. Adding, changing
// or removing a Worker makes Miniflare restart workerd with the new set; meanwhile the fronts
// hold new requests and let the ones under way finish first, so no Worker loses a request to
// another Worker's deploy.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import { createServer as createNetServer } from "node:net";
import path from "node:path";

import { addSecretUrl, guardProcess, pipeLines, redactOutput, relay } from "./miniflare_common.mjs";

const DRAIN_TIMEOUT_MS = 30000; // requests under way get this long before workerd restarts
const MAX_CONTROL_BYTES = 64 * 1024 * 1024;

function readConfig() {
  try {
    return JSON.parse(readFileSync(0, "utf8"));
  } catch {
    process.stderr.write("miniflare-host: stdin is not a JSON config\n");
    process.exit(2);
  }
}

const config = readConfig();
redactOutput();
guardProcess();
const require = createRequire(`${config.node_modules}/../package.json`);
const { Miniflare, Log, LogLevel } = require("miniflare");

// name -> {spec, front (http.Server), port, relays, hyperdrives, target (URL or null)}
const workers = new Map();
let mf = null;
let paused = false;
let inFlight = 0;
const waiting = []; // requests held while workerd restarts
let drained = null;
let generation = 0; // each put's number: tells a reconfigured Worker from the one before

function log(line) {
  process.stdout.write(`miniflare-host: ${line}\n`);
}

// Miniflare names a Hyperdrive binding's proxy after the binding alone, so two Workers that both
// bind HYPERDRIVE would share one origin. Each Worker's bindings get names of their own in
// Miniflare (HYPERDRIVE__fs<n>), and a small entry module hands the Worker's handlers an env with
// the names it was deployed with. (A default export that is a class gets its env elsewhere: it
// is served as it is.)
const ENTRY_MODULE = "__forkstage_entry.mjs";

function entryModule(main, aliases) {
  const from = JSON.stringify(`./${main}`);
  return `import * as mod from ${from};
export * from ${from};
const ALIASES = ${JSON.stringify(aliases)};
function remap(env) {
  if (!env || typeof env !== "object") return env;
  const out = { ...env };
  for (const [name, real] of Object.entries(ALIASES)) {
    out[name] = env[real];
    delete out[real];
  }
  return out;
}
const inner = mod.default;
let outer = inner;
if (inner && typeof inner === "object") {
  outer = {};
  for (const key of Object.keys(inner)) {
    const value = inner[key];
    outer[key] =
      typeof value === "function"
        ? function (event, env, ctx) {
            return value.call(inner, event, remap(env), ctx);
          }
        : value;
  }
}
export default outer;
`;
}

function workerOptions(entry) {
  const { spec } = entry;
  const hyperdrives = {};
  const aliases = {};
  for (const [binding, local] of Object.entries(entry.hyperdrives)) {
    const unique = `${binding}__fs${entry.generation}`;
    hyperdrives[unique] = local;
    aliases[binding] = unique;
  }
  const main = { type: "ESModule", path: spec.main_module, contents: spec.script };
  const modules = Object.keys(aliases).length
    ? [
        { type: "ESModule", path: ENTRY_MODULE, contents: entryModule(spec.main_module, aliases) },
        main,
      ]
    : [main];
  return {
    name: spec.name,
    modules,
    compatibilityDate: spec.compatibility_date,
    compatibilityFlags: spec.compatibility_flags,
    bindings: spec.bindings ?? {},
    hyperdrives,
    // the Worker's own fetch()/connect() may reach loopback addresses only
    outboundService: { network: { allow: ["local"] } },
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  };
}

function options(entries) {
  return {
    host: "127.0.0.1",
    port: 0,
    // Offline and loopback only: no request.cf download, no telemetry, no live reload.
    cf: false,
    telemetry: { enabled: false },
    liveReload: false,
    log: new Log(LogLevel.INFO, { prefix: "mf" }),
    handleRuntimeStdio(stdout, stderr) {
      pipeLines(stdout, process.stdout);
      pipeLines(stderr, process.stderr);
    },
    workers: entries.map(workerOptions),
  };
}

// -- the fronts: one per Worker, on its own port --------------------------------------------------
function finished() {
  inFlight -= 1;
  if (inFlight === 0 && drained) drained();
}

function forward(entry, req, res) {
  inFlight += 1;
  let done = false;
  const end = () => {
    if (!done) {
      done = true;
      finished();
    }
  };
  res.on("close", end);
  const target = entry.target;
  if (!target) {
    res
      .writeHead(503, { "content-type": "text/plain" })
      .end(`Worker ${entry.spec.name} is not running\n`);
    return;
  }
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
      answer.pipe(res);
    }
  );
  upstream.on("error", (err) => {
    if (!res.headersSent) {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(`Worker ${entry.spec.name} did not answer: ${err.code ?? err.message}\n`);
    } else res.destroy();
  });
  req.pipe(upstream);
}

function onRequest(entry) {
  return (req, res) => {
    if (paused) waiting.push(() => forward(workers.get(entry.spec.name) ?? entry, req, res));
    else forward(entry, req, res);
  };
}

async function listen(server, port) {
  await new Promise((done, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", done);
  });
  return server.address().port;
}

// -- reconfiguration ------------------------------------------------------------------------------
async function quiesce() {
  paused = true;
  if (inFlight > 0) {
    await Promise.race([
      new Promise((done) => (drained = done)),
      new Promise((done) => setTimeout(done, DRAIN_TIMEOUT_MS)),
    ]);
    drained = null;
  }
}

function resume() {
  paused = false;
  for (const go of waiting.splice(0)) go();
}

async function apply(entries) {
  if (entries.length === 0) {
    if (mf) await mf.dispose().catch(() => {});
    mf = null;
    return;
  }
  if (mf) await mf.setOptions(options(entries));
  else {
    const fresh = new Miniflare(options(entries));
    try {
      await fresh.ready;
    } catch (err) {
      await fresh.dispose().catch(() => {});
      throw err;
    }
    mf = fresh;
  }
  for (const entry of entries) entry.target = await mf.unsafeGetDirectURL(entry.spec.name);
}

async function put(spec) {
  if (!spec || typeof spec.name !== "string" || !spec.name)
    throw new Error("a Worker needs a name");
  for (const url of Object.values(spec.hyperdrives ?? {})) addSecretUrl(url);
  const old = workers.get(spec.name);
  const relays = [];
  const hyperdrives = {};
  for (const [binding, target] of Object.entries(spec.hyperdrives ?? {})) {
    const [server, local] = await relay(binding, target);
    relays.push(server);
    hyperdrives[binding] = local;
  }
  const entry = {
    spec,
    relays,
    hyperdrives,
    target: null,
    front: old?.front,
    port: old?.port,
    generation: ++generation,
  };
  const others = [...workers.values()].filter((w) => w.spec.name !== spec.name);
  await quiesce();
  try {
    await apply([...others, entry]);
  } catch (err) {
    for (const server of relays) server.close();
    // the others (and the Worker's previous version) keep running as they were
    await apply(old ? [...others, old] : others).catch((again) => {
      log(`could not restore the other Workers: ${again?.message ?? again}`);
    });
    resume();
    throw err;
  }
  workers.set(spec.name, entry);
  if (old) for (const server of old.relays) server.close();
  resume();
  if (!entry.front) {
    const front = http.createServer(onRequest(entry));
    front.keepAliveTimeout = 5000;
    try {
      entry.port = await listen(front, spec.port || (old?.port ?? 0));
    } catch (err) {
      workers.delete(spec.name);
      await quiesce();
      await apply(others).finally(resume);
      throw new Error(`port ${spec.port} is taken: ${err.code ?? err.message}`);
    }
    entry.front = front;
  } else {
    // same front, new Worker behind it: requests reach the new entry
    entry.front.removeAllListeners("request");
    entry.front.on("request", onRequest(entry));
  }
  log(`${spec.name} ready on http://127.0.0.1:${entry.port}/`);
  return { url: `http://127.0.0.1:${entry.port}/` };
}

async function remove(name) {
  const entry = workers.get(name);
  if (!entry) return { removed: false };
  workers.delete(name);
  await quiesce();
  try {
    await apply([...workers.values()]);
  } finally {
    resume();
  }
  entry.front.close();
  entry.front.closeAllConnections?.();
  for (const server of entry.relays) server.close();
  log(`${name} stopped`);
  return { removed: true };
}

function list() {
  const out = {};
  for (const [name, entry] of workers) {
    out[name] = {
      url: `http://127.0.0.1:${entry.port}/`,
      fingerprint: entry.spec.fingerprint ?? "",
      generation: entry.generation,
    };
  }
  return { workers: out };
}

async function shutdown(why) {
  log(`${why}, stopping ${workers.size} Workers`);
  try {
    for (const entry of workers.values()) entry.front?.close();
    if (mf) await mf.dispose();
  } finally {
    rmSync(config.control, { force: true });
    process.exit(0);
  }
}

// -- the control socket ---------------------------------------------------------------------------
let queue = Promise.resolve();
function handle(request) {
  switch (request?.op) {
    case "put":
      return put(request.worker);
    case "delete":
      return remove(request.name);
    case "list":
      return list();
    case "shutdown":
      setImmediate(() => shutdown("asked to"));
      return { stopping: true };
    default:
      throw new Error(`unknown request ${JSON.stringify(request?.op)}`);
  }
}

const control = createNetServer({ allowHalfOpen: true }, (socket) => {
  const chunks = [];
  let size = 0;
  socket.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_CONTROL_BYTES) socket.destroy();
    else chunks.push(chunk);
  });
  socket.on("error", () => {});
  socket.on("end", () => {
    let request;
    try {
      request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      socket.end(JSON.stringify({ ok: false, error: "not a JSON request" }) + "\n");
      return;
    }
    // one change at a time, in arrival order
    queue = queue.then(async () => {
      try {
        const answer = await handle(request);
        socket.end(JSON.stringify({ ok: true, ...answer }) + "\n");
      } catch (err) {
        process.stderr.write(`miniflare-host: ${request?.op} failed: ${err?.stack ?? err}\n`);
        socket.end(JSON.stringify({ ok: false, error: String(err?.message ?? err) }) + "\n");
      }
    });
  });
});

mkdirSync(path.dirname(config.control), { recursive: true, mode: 0o700 });
rmSync(config.control, { force: true });
control.listen(config.control, () => {
  const tmp = `${config.ready_file}.tmp`;
  writeFileSync(tmp, JSON.stringify({ pid: process.pid, control: config.control }) + "\n");
  renameSync(tmp, config.ready_file);
  log(`ready (pid ${process.pid})`);
});
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
