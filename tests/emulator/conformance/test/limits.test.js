'use strict';
// Limits that hold for compressed requests too: a body is measured after it is decompressed,
// so a small gzip request cannot make the emulator hold gigabytes.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const zlib = require('zlib');
const { startEmulator, call } = require('./helpers');

let emu;
before(async () => { emu = await startEmulator(['--project', 'lp', '--topic', 'events']); });
after(async () => { await emu.stop(); });

test('a gzip request body inflating past 256 MB is refused with 413, the emulator stays up', async () => {
  // 300 gzip members of 1 MB of zeros each: about 300 KB on the wire, 300 MB inflated
  const member = zlib.gzipSync(Buffer.alloc(1024 * 1024));
  const body = Buffer.concat(Array(300).fill(member));
  assert.ok(body.length < 2 * 1024 * 1024);
  const r = await call(`${emu.url}/v1/projects/lp/topics/events:publish`, 'POST', body,
    { 'content-encoding': 'gzip' });
  assert.equal(r.status, 413, r.text);
  assert.match(r.json.error.message, /once decompressed/);
  const ok = await call(`${emu.url}/v1/projects/lp/topics/events:publish`, 'POST',
    zlib.gzipSync(JSON.stringify({ messages: [{ data: 'eA==' }] })), { 'content-encoding': 'gzip' });
  assert.equal(ok.status, 200, ok.text);
});
