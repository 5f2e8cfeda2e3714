#!/usr/bin/env node
// Bundles this repository's example Worker (worker/src/index.js + postgres.js) with forkstage's
// own bundler (forkstage/build-worker.mjs, the one `forkstage deploy` runs when the bundle is
// stale) into worker/dist/index.js, which is committed so a deploy of this repository needs no
// Node packages. `--check` rebuilds in memory and fails when the committed bundle differs.
//
// Usage: node scripts/build-worker.mjs [--check]
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bundle, fail, write } from "../forkstage/build-worker.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const entry = "worker/src/index.js";
const outfile = "worker/dist/index.js";

// The same hash as forkstage/bundle.py's sources_hash: each file under worker/src, then the
// lock file, as "<path>\0<sha256>\n", sorted by path.
function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}
function sourcesHash() {
  const sha = (path) => createHash("sha256").update(readFileSync(path)).digest("hex");
  const rel = (path) => relative(root, path).split("\\").join("/");
  const entries = files(join(root, "worker", "src")).map((p) => [rel(p), p]);
  entries.sort(([a], [b]) => (Buffer.from(a) < Buffer.from(b) ? -1 : a === b ? 0 : 1));
  const lock = join(root, "package-lock.json");
  if (existsSync(lock)) entries.push(["package-lock.json", lock]);
  const lines = entries.map(([r, p]) => `${r}\0${sha(p)}\n`).join("");
  return createHash("sha256").update(lines).digest("hex");
}

const check = process.argv.includes("--check");
const unknown = process.argv.slice(2).filter((a) => a !== "--check");
if (unknown.length) fail(`unknown argument ${unknown[0]}: usage: build-worker.mjs [--check]`);

const text = await bundle({ root, entry, outfile, hash: sourcesHash() });
if (check) {
  let committed = "";
  try {
    committed = readFileSync(join(root, outfile), "utf8");
  } catch {
    fail(`${outfile} is missing: run \`node scripts/build-worker.mjs\``);
  }
  if (committed !== text) {
    fail(`${outfile} is stale: run \`node scripts/build-worker.mjs\` and commit it`);
  }
  process.stdout.write(`build-worker: ${outfile} is up to date\n`);
} else {
  write(root, outfile, text);
  process.stdout.write(`build-worker: wrote ${outfile} (${text.length} bytes)\n`);
}
