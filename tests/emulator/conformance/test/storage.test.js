'use strict';
// @google-cloud/storage against the emulator through STORAGE_EMULATOR_HOST (JSON calls at
// /b/..., uploads at /upload/storage/v1/...), checking hashes the way the client does.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { startEmulator, call } = require('./helpers');

let emu; let storage; let bucket;
before(async () => {
  emu = await startEmulator();
  process.env.STORAGE_EMULATOR_HOST = emu.url;
  const { Storage } = require('@google-cloud/storage');
  storage = new Storage({ projectId: 'conf-proj' });
  [bucket] = await storage.createBucket('conf-bucket');
});
after(async () => { await emu.stop(); });

test('bucket get, duplicate create is 409, unknown bucket 404', async () => {
  const [meta] = await bucket.getMetadata();
  assert.equal(meta.name, 'conf-bucket');
  await assert.rejects(storage.createBucket('conf-bucket'), (e) => e.code === 409);
  await assert.rejects(storage.bucket('no-such-bucket').getMetadata(), (e) => e.code === 404);
  await assert.rejects(storage.bucket('no-such-bucket').file('x').save('x', { resumable: false }), (e) => e.code === 404);
});

test('multipart upload (resumable:false) and download with hash validation', async () => {
  const f = bucket.file('dir/multi.json');
  await f.save(JSON.stringify({ a: 1 }) + '\n', { resumable: false, contentType: 'application/json', metadata: { metadata: { k: 'v' } } });
  const [meta] = await f.getMetadata();
  assert.equal(meta.contentType, 'application/json');
  assert.equal(meta.size, '8');
  assert.equal(meta.metadata.k, 'v');
  assert.equal(typeof meta.generation, 'string');
  const [data] = await f.download({ validation: 'crc32c' });
  assert.equal(data.toString(), '{"a":1}\n');
  const [data2] = await f.download({ validation: 'md5' });
  assert.equal(data2.toString(), '{"a":1}\n');
  assert.ok(fs.existsSync(path.join(emu.data, 'gcs', 'conf-bucket', 'dir', 'multi.json')));
});

test('resumable upload (multi-chunk) keeps bytes exact', async () => {
  const big = crypto.randomBytes(3 * 256 * 1024 + 12345);
  const f = bucket.file('dir/big.bin');
  await f.save(big, { resumable: true, chunkSize: 256 * 1024, validation: 'crc32c' });
  const [meta] = await f.getMetadata();
  assert.equal(meta.size, String(big.length));
  assert.equal(meta.md5Hash, crypto.createHash('md5').update(big).digest('base64'));
  const [back] = await f.download();
  assert.ok(back.equals(big));
  // single-request resumable stream
  await bucket.file('dir/stream.txt').save('streamed', { resumable: true });
  assert.equal((await bucket.file('dir/stream.txt').download())[0].toString(), 'streamed');
});

test('precondition ifGenerationMatch=0 gives 412 on an existing object', async () => {
  const f = bucket.file('once.txt');
  await f.save('first', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
  await assert.rejects(f.save('second', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }), (e) => e.code === 412);
  await assert.rejects(f.save('second', { resumable: true, preconditionOpts: { ifGenerationMatch: 0 } }),
    (e) => String(e.code) === '412' || (e.response && e.response.status === 412));
  assert.equal((await f.download())[0].toString(), 'first');
  const [m1] = await f.getMetadata();
  await f.save('third', { resumable: false, preconditionOpts: { ifGenerationMatch: Number(m1.generation) } });
  const [m2] = await f.getMetadata();
  assert.ok(BigInt(m2.generation) > BigInt(m1.generation), 'generation grows');
});

test('list with prefix, delimiter and paging', async () => {
  for (let i = 0; i < 5; i++) await bucket.file(`list/p${i}.txt`).save(String(i), { resumable: false });
  await bucket.file('list/sub/x.txt').save('x', { resumable: false });
  const [files, , resp] = await bucket.getFiles({ prefix: 'list/', delimiter: '/', autoPaginate: false });
  assert.deepEqual(files.map((f) => f.name), ['list/p0.txt', 'list/p1.txt', 'list/p2.txt', 'list/p3.txt', 'list/p4.txt']);
  assert.deepEqual(resp.prefixes, ['list/sub/']);
  // Page by hand with maxResults=2 and the nextQuery the client derives from nextPageToken.
  const seen = [];
  let q = { prefix: 'list/', maxResults: 2, autoPaginate: false };
  for (let pages = 0; q; pages++) {
    assert.ok(pages < 10, 'paging terminates');
    const [page, next] = await bucket.getFiles(q);
    assert.ok(page.length <= 2);
    seen.push(...page.map((f) => f.name));
    q = next;
  }
  assert.deepEqual(seen, ['list/p0.txt', 'list/p1.txt', 'list/p2.txt', 'list/p3.txt', 'list/p4.txt', 'list/sub/x.txt']);
});

test('media upload, alt=media headers, delete', async () => {
  const r = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=media&name=${encodeURIComponent('raw/a b.txt')}`, 'POST', 'hello world', { 'content-type': 'text/plain' });
  assert.equal(r.status, 200);
  assert.equal(r.json.crc32c, 'yZRlqg==');
  assert.equal(r.json.md5Hash, 'XrY7u+Ae7tCTyyK7j1rNww==');
  const d = await fetch(`${emu.url}/storage/v1/b/conf-bucket/o/${encodeURIComponent('raw/a b.txt')}?alt=media`);
  assert.equal(d.headers.get('x-goog-hash'), 'crc32c=yZRlqg==,md5=XrY7u+Ae7tCTyyK7j1rNww==');
  assert.equal(d.headers.get('x-goog-stored-content-encoding'), 'identity');
  assert.equal(await d.text(), 'hello world');
  await bucket.file('raw/a b.txt').delete();
  await assert.rejects(bucket.file('raw/a b.txt').getMetadata(), (e) => e.code === 404);
});

test('resumable wire protocol: 308 + Range at 256 KiB units, status query', async () => {
  const start = await fetch(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=resumable&name=wire.bin`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  assert.equal(start.status, 200);
  const loc = start.headers.get('location');
  assert.match(loc, /upload_id=/);
  const data = crypto.randomBytes(300 * 1024);
  // 300 KiB sent as a non-final chunk: only 256 KiB are persisted
  let r = await fetch(loc, { method: 'PUT', body: data, headers: { 'content-range': `bytes 0-${data.length - 1}/*` } });
  assert.equal(r.status, 308);
  assert.equal(r.headers.get('range'), 'bytes=0-262143');
  r = await fetch(loc, { method: 'PUT', headers: { 'content-range': 'bytes */*' } });
  assert.equal(r.status, 308);
  assert.equal(r.headers.get('range'), 'bytes=0-262143');
  r = await fetch(loc, { method: 'PUT', body: data.subarray(262144), headers: { 'content-range': `bytes 262144-${data.length - 1}/${data.length}` } });
  assert.equal(r.status, 200);
  const obj = await r.json();
  assert.equal(obj.size, String(data.length));
  r = await fetch(loc, { method: 'PUT', headers: { 'content-range': `bytes */${data.length}` } });
  assert.equal(r.status, 200);
});
