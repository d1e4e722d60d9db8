'use strict';
// Starts emulators for the tests: each on a free port with its own temporary data folder.

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const EMULATOR = path.resolve(__dirname, '../../emulator');
const MAKE_KEY = path.resolve(__dirname, '../../make-test-key');

// Returns {url, port, grpc (host:port or null), grpcPort, data, admin(method, path, body), restart(), stop()}.
async function startEmulator(args = [], opts = {}) {
  const data = opts.data || fs.mkdtempSync(path.join(os.tmpdir(), 'emu-test-'));
  const emu = { data, args };
  const launch = () => new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [EMULATOR, '--port', String(opts.port || 0), '--data', data, '--quiet', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = ''; let err = '';
    const timer = setTimeout(() => reject(new Error('emulator did not start: ' + err)), 10000);
    proc.stderr.on('data', (d) => { err += d; });
    proc.stdout.on('data', (d) => {
      out += d;
      // The REST line, then the gRPC one: "grpc on HOST:PORT (h2c)" or "grpc off (why)".
      const m = /listening on (https?:\/\/[^\s]+)\n(grpc (?:on (\S+)|off))/.exec(out);
      if (m && !emu.url) {
        clearTimeout(timer);
        emu.url = m[1];
        emu.port = Number(m[1].split(':').pop());
        emu.grpc = m[3] || null;
        emu.grpcPort = m[3] ? Number(m[3].split(':').pop()) : null;
        emu.stdout = out;
        resolve();
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); if (!emu.url) reject(new Error(`emulator exited ${code}: ${err}`)); });
    emu.proc = proc;
  });
  await launch();
  emu.admin = async (method, p, body) => {
    const r = await fetch(emu.url + p, { method, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await r.text();
    try { return JSON.parse(text); } catch (e) { return text; }
  };
  emu.stop = () => new Promise((resolve) => {
    if (!emu.proc || emu.proc.exitCode !== null) return resolve();
    emu.proc.once('exit', () => resolve());
    emu.proc.kill('SIGTERM');
  });
  // Restarts on the same port and data folder (clients keep working with the same URL).
  emu.restart = async (kill = 'SIGTERM') => {
    await new Promise((resolve) => { emu.proc.once('exit', resolve); emu.proc.kill(kill); });
    const port = emu.port; emu.url = null; opts.port = port;
    await launch();
  };
  return emu;
}

function makeKey(email) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'emu-key-')), 'key.json');
  const a = [MAKE_KEY, '--out', file];
  if (email) a.push('--email', email);
  require('child_process').execFileSync(process.execPath, a);
  return file;
}

// fetch + JSON helper for raw wire checks.
async function call(url, method, body, headers = {}) {
  const r = await fetch(url, { method, headers: Object.assign({ 'content-type': 'application/json' }, headers),
    body: body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { startEmulator, makeKey, call, sleep };
