// Serves one Worker with Miniflare on 127.0.0.1 for forkstage's local cloud.
//
// Started by localcloud/workers.py as `node miniflare_launcher.mjs` with a JSON config on
// stdin (never argv or env: the Hyperdrive connection strings carry database passwords). Prints
// its logs to stdout/stderr with every secret from the config replaced by "***", writes
// {"url": ...} to config.ready_file once Miniflare serves, and shuts Miniflare (and workerd) down
// on SIGTERM/SIGINT.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

import { addSecretUrl, guardProcess, pipeLines, redactOutput, relay } from "./miniflare_common.mjs";

function readConfig() {
  const text = readFileSync(0, "utf8");
  try {
    return JSON.parse(text);
  } catch {
    process.stderr.write("miniflare-launcher: stdin is not a JSON config\n");
    process.exit(2);
  }
}

const config = readConfig();

for (const url of Object.values(config.hyperdrives ?? {})) addSecretUrl(url);
redactOutput();
guardProcess();

const require = createRequire(`${config.node_modules}/../package.json`);
let mf;
const relays = [];
try {
  const { Miniflare, Log, LogLevel } = require("miniflare");
  const hyperdrives = {};
  for (const [binding, target] of Object.entries(config.hyperdrives ?? {})) {
    const [server, local] = await relay(binding, target);
    relays.push(server);
    hyperdrives[binding] = local;
  }
  mf = new Miniflare({
    name: config.name,
    modules: [{ type: "ESModule", path: config.main_module, contents: config.script }],
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags,
    bindings: config.bindings,
    hyperdrives,
    host: "127.0.0.1",
    port: config.port,
    // Offline and loopback only: no request.cf download, no telemetry, no live reload, no dev
    // registry, and the Worker's own fetch()/connect() may reach loopback addresses only.
    cf: false,
    telemetry: { enabled: false },
    liveReload: false,
    outboundService: { network: { allow: ["local"] } },
    log: new Log(LogLevel.INFO, { prefix: "mf" }),
    handleRuntimeStdio(stdout, stderr) {
      pipeLines(stdout, process.stdout);
      pipeLines(stderr, process.stderr);
    },
  });
  const url = await mf.ready;
  const tmp = `${config.ready_file}.tmp`;
  writeFileSync(tmp, JSON.stringify({ url: url.href, pid: process.pid }) + "\n");
  renameSync(tmp, config.ready_file);
  process.stdout.write(`miniflare-launcher: ${config.name} ready on ${url.href}\n`);
} catch (err) {
  process.stderr.write(`miniflare-launcher: cannot start ${config.name}: ${err?.stack ?? err}\n`);
  if (mf) await mf.dispose().catch(() => {});
  process.exit(1);
}

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  process.stdout.write(`miniflare-launcher: ${signal}, stopping ${config.name}\n`);
  try {
    for (const server of relays) server.close();
    await mf.dispose();
  } finally {
    process.exit(0);
  }
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
