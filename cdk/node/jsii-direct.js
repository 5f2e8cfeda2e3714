"use strict";
// The jsii kernel (program.js of the runtime that jsii's Python package ships) in this process,
// without the stock bin/jsii-runtime.js launcher and the second node process it starts.
// cdk/node/jsii-node hands over the request pipe on fd 3 and the response pipe on fd 4;
// fd 1 and fd 2 both lead to jsii's stderr relay, fd 0 is /dev/null.
const fs = require("fs");
const path = require("path");
const { Writable } = require("stream");

// <dir>/bin/jsii-runtime.js as jsii extracted it, or the bin__jsii-runtime.js that jsii's
// Python package embeds (cdk/kernel.py starts the kernel from there, before jsii is imported).
const runtime = process.argv[2];
const here = path.dirname(runtime);
const embedded = path.basename(runtime) === "bin__jsii-runtime.js";
const program = embedded
  ? path.join(here, "lib__program.js")
  : path.resolve(here, "..", "lib", "program.js");
if (embedded) {
  // program.js starts <its dir>/runtime-index-worker.js; the embedded copy has another name.
  const threads = require("worker_threads");
  const Worker = threads.Worker;
  const wanted = path.join(here, "runtime-index-worker.js");
  threads.Worker = class extends Worker {
    constructor(file, options) {
      super(file === wanted ? path.join(here, "lib__runtime-index-worker.js") : file, options);
    }
  };
}

// The kernel reads requests from fd 3 and writes responses to fd 3 (its launcher gives it one
// duplex channel); a pipe is one-way, so its writes go to fd 4.
const writeSync = fs.writeSync;
fs.writeSync = function (fd, ...rest) {
  return writeSync.call(fs, fd === 3 ? 4 : fd, ...rest);
};

// Console output of code running in the kernel travels as {"stdout"|"stderr": base64} lines on
// stderr, the framing jsii's Python side decodes (as the stock launcher does).
const pause = new Int32Array(new SharedArrayBuffer(4));
function writeLine(text) {
  const buf = Buffer.from(text + "\n");
  for (let off = 0, wait = 1; off < buf.length; ) {
    try {
      off += writeSync.call(fs, 2, buf, off);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, wait);
      wait = Math.min(wait * 2, 10);
    }
  }
}
function relay(key) {
  return new Writable({
    write(chunk, encoding, done) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, encoding);
      writeLine(JSON.stringify({ [key]: buf.toString("base64") }));
      done();
    },
  });
}
for (const [name, stream] of [["stdout", relay("stdout")], ["stderr", relay("stderr")]]) {
  Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => stream });
}

require(program);
