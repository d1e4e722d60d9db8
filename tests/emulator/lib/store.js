'use strict';
// Small filesystem helpers for the state under --data DIR. State is written synchronously:
// the emulator is a test tool, and a write that has returned must survive a kill -9 so that
// restart tests see exactly what the client was told was stored.

const fs = require('fs');
const path = require('path');
const { StringDecoder } = require('string_decoder');

function mkdirp(dir) { fs.mkdirSync(dir, { recursive: true }); }

// Atomic replace: write a temp file then rename, so a crash never leaves half a JSON file.
function writeFileAtomic(file, data) {
  mkdirp(path.dirname(file));
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function writeJson(file, obj) { writeFileAtomic(file, JSON.stringify(obj, null, 2) + '\n'); }

function readJson(file, dflt) {
  try { return JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) { return dflt; }
}

function rm(p) { fs.rmSync(p, { recursive: true, force: true }); }

function listDir(dir) {
  try { return fs.readdirSync(dir); } catch (e) { return []; }
}

// An append-only file kept open. `write` hands the bytes to libuv's thread pool (the copy
// into the page cache then runs on another core) and resolves once they are in the file;
// handlers reply only after that, so what a client was told is stored survives kill -9.
// One write is in flight at a time, and everything queued meanwhile goes out as one write,
// which keeps appends in order.
class AppendLog {
  constructor(file) {
    this.file = file;
    mkdirp(path.dirname(file));
    this.fd = fs.openSync(file, 'a');
    this.queue = [];
    this.waiters = [];
    this.busy = false;
  }
  write(str) {
    if (!str.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.queue.push(str);
      this.waiters.push({ resolve, reject });
      if (!this.busy) this.flush();
    });
  }
  // Resolves when everything written so far is in the file (readers of the file wait on it).
  drain() {
    if (!this.busy && !this.queue.length) return Promise.resolve();
    return new Promise((resolve, reject) => { this.waiters.push({ resolve, reject }); if (!this.busy) this.flush(); });
  }
  flush() {
    if (this.fd === null) return;
    if (!this.queue.length) { // only drain() waiters left
      const w = this.waiters;
      this.waiters = [];
      for (const x of w) x.resolve();
      return;
    }
    this.busy = true;
    const q = this.queue;
    const buf = q.length === 1 ? (Buffer.isBuffer(q[0]) ? q[0] : Buffer.from(q[0]))
      : Buffer.concat(q.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x))));
    const waiters = this.waiters;
    this.queue = [];
    this.waiters = [];
    const done = (err) => {
      this.busy = false;
      for (const w of waiters) if (err) w.reject(err); else w.resolve();
      this.flush();
    };
    const writeFrom = (off) => fs.write(this.fd, buf, off, buf.length - off, null, (err, n) => {
      if (err) return done(err);
      if (off + n < buf.length) return writeFrom(off + n);
      return done(null);
    });
    writeFrom(0);
  }
  // Synchronous append, for rare writes outside request handling.
  append(str) { if (str.length) fs.writeSync(this.fd, str); }
  close() {
    if (this.fd === null) return;
    const fd = this.fd;
    // Pending writes finish first (closing under them would lose acknowledged data).
    if (this.busy || this.queue.length) {
      const pending = this.queue;
      this.queue = [];
      for (const x of pending) fs.writeSync(fd, x);
      for (const w of this.waiters) w.resolve();
      this.waiters = [];
    }
    this.fd = null;
    if (!this.busy) fs.closeSync(fd);
    else setTimeout(() => fs.closeSync(fd), 1000);
  }
}

// Reads an NDJSON file line by line without loading it as one giant string.
function readLines(file, onLine) {
  let fd;
  try { fd = fs.openSync(file, 'r'); } catch (e) { return; }
  const buf = Buffer.allocUnsafe(1 << 20);
  // StringDecoder keeps a UTF-8 sequence split across two reads intact.
  const dec = new StringDecoder('utf8');
  let rest = '';
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n <= 0) break;
    const text = rest + dec.write(buf.subarray(0, n));
    const lines = text.split('\n');
    rest = lines.pop();
    for (const l of lines) if (l) onLine(l);
  }
  if (rest) onLine(rest);
  fs.closeSync(fd);
}

module.exports = { mkdirp, writeFileAtomic, writeJson, readJson, rm, listDir, AppendLog, readLines };
