// What the single-Worker launcher (miniflare_launcher.mjs) and the shared host
// (miniflare_host.mjs) of forkstage's local cloud have in common: secrets kept out of every
// line printed, loopback relays in front of each Hyperdrive origin, and the guards that keep a
// proxied socket's error from ending the process.
import net, { createServer, connect } from "node:net";
import { createInterface } from "node:readline";

// Every form in which a password could show up in a message: the whole URL and the password,
// raw, percent-decoded and percent-encoded.
export const secrets = new Set();
export function addSecretUrl(url) {
  secrets.add(url);
  try {
    const parsed = new URL(url);
    for (const part of [parsed.password, parsed.href]) {
      if (!part) continue;
      secrets.add(part);
      try {
        secrets.add(decodeURIComponent(part));
      } catch {}
      secrets.add(encodeURIComponent(part));
    }
  } catch {}
}

export function redact(text) {
  const ordered = [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  let out = text;
  for (const secret of ordered) out = out.split(secret).join("***");
  return out;
}

// Everything this process prints goes through redact(): Miniflare's own log, validation errors
// (which echo option values) and uncaught errors alike.
export function redactOutput() {
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    stream.write = (chunk, encoding, callback) => {
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
      return write(redact(text), typeof encoding === "string" ? "utf8" : encoding, callback);
    };
  }
}

// workerd's own output (the Worker's console.log, runtime errors), line by line so that a secret
// is never split across two chunks.
export function pipeLines(source, sink) {
  createInterface({ input: source, crlfDelay: Infinity }).on("line", (line) => {
    sink.write(`[worker] ${line}\n`);
  });
}

// Miniflare's own Hyperdrive proxy lets a refused connection to the database escape as an
// uncaught error, which kills this process (and the Worker with it) at the first query while
// PostgreSQL is down, and leaves the Worker's socket hanging. Each binding therefore points
// Miniflare at a loopback relay of ours that always accepts; when the database cannot be reached
// it answers the client's startup packet with a PostgreSQL ErrorResponse (SQLSTATE 08006) and
// closes, so the Worker's query fails at once with a readable message and the Worker stays up.
function errorResponse(message) {
  const fields = [
    ["S", "FATAL"],
    ["V", "FATAL"],
    ["C", "08006"],
    ["M", message],
  ];
  const body = Buffer.concat([
    ...fields.map(([code, text]) => Buffer.from(`${code}${text}\0`, "utf8")),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write("E", 0, "latin1");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

export async function relay(binding, target) {
  const origin = new URL(target);
  // Local clusters listen on 127.0.0.1 only; "localhost" may resolve to ::1 first.
  const named = origin.hostname.replace(/^\[|\]$/g, "");
  const host = named === "localhost" ? "127.0.0.1" : named;
  const port = Number(origin.port);
  const server = createServer((client) => {
    const upstream = connect({ host, port, noDelay: true });
    client.setNoDelay(true);
    let connected = false;
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on("connect", () => {
      connected = true;
    });
    upstream.on("error", (err) => {
      const why = `database ${host}:${port} is not reachable (${err.code ?? err.message})`;
      process.stderr.write(`miniflare-launcher: ${binding}: ${why}\n`);
      if (connected) client.destroy();
      else client.end(errorResponse(`forkstage local ${binding}: ${why}`));
    });
    client.on("error", () => upstream.destroy());
  });
  await new Promise((done, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", done);
  });
  const local = new URL(target);
  local.hostname = "127.0.0.1";
  local.port = String(server.address().port);
  secrets.add(local.href);
  return [server, local.href];
}

// The same proxy has no error handlers on its sockets either: a database that drops a session
// (restart, pg_terminate_backend) must not take the Worker down. Only socket errors are absorbed.
const SOCKET_ERRORS = new Set([
  "EPIPE",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);
export function guardProcess() {
  process.on("uncaughtException", (err) => {
    if (SOCKET_ERRORS.has(err?.code)) {
      process.stderr.write(`miniflare-launcher: a proxied connection closed (${err.code})\n`);
      return;
    }
    process.stderr.write(`miniflare-launcher: fatal: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
  // Database traffic crosses two loopback proxies (Miniflare's, then ours); with Nagle's algorithm
  // on, a multi-packet result waits out the peer's delayed ACK (+40 ms per query). This process
  // only serves loopback, so every server in it (Miniflare's proxy included) accepts NODELAY sockets.
  const netCreateServer = net.createServer;
  net.createServer = (options, listener) =>
    typeof options === "function" || options === undefined
      ? netCreateServer({ noDelay: true }, options)
      : netCreateServer({ noDelay: true, ...options }, listener);
}
