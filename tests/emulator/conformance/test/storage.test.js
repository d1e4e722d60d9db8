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

// ---- gzip objects: stored compressed, served by decompressive transcoding ----------------
// GCS (https://cloud.google.com/storage/docs/transcoding) keeps the bytes of an object whose
// contentEncoding is gzip as they were uploaded, hashes those stored bytes, and serves them
// decompressed to a reader that does not accept gzip.

const zlib = require('zlib');
const http = require('http');

const NDJSON = Array.from({ length: 400 }, (_, i) => JSON.stringify({ id: i, kind: 'order', note: 'x'.repeat(i % 40) })).join('\n') + '\n';
const md5 = (b) => crypto.createHash('md5').update(b).digest('base64');

// A GET with exactly these headers (fetch would add Accept-Encoding and decode by itself).
function rawGet(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}
const storedFile = (name) => fs.readFileSync(path.join(emu.data, 'gcs', 'conf-bucket', name));

test('@google-cloud/storage gzip:true uploads (multipart and resumable) store gzip bytes hashed as stored', async () => {
  for (const resumable of [false, true]) {
    const name = `gz/${resumable ? 'resumable' : 'multipart'}.json`;
    const f = bucket.file(name);
    // the client hashes what it sends (the gzip bytes) and checks them against the reply
    await f.save(NDJSON, { gzip: true, resumable, contentType: 'application/x-ndjson', validation: 'crc32c' });
    await f.save(NDJSON, { gzip: true, resumable, contentType: 'application/x-ndjson', validation: 'md5' });
    const [meta] = await f.getMetadata();
    const stored = storedFile(name);
    assert.equal(meta.contentEncoding, 'gzip');
    assert.equal(meta.contentType, 'application/x-ndjson');
    assert.equal(stored[0], 0x1f, 'stored compressed');
    assert.equal(stored[1], 0x8b);
    assert.ok(stored.length < NDJSON.length / 2, `compressed: ${stored.length} of ${NDJSON.length}`);
    assert.equal(meta.size, String(stored.length), 'size is that of the stored bytes');
    assert.equal(meta.md5Hash, md5(stored), 'md5Hash of the stored bytes');
    assert.equal(meta.crc32c, require('../../lib/crc32c').crc32cBase64(stored), 'crc32c of the stored bytes');
    assert.equal(zlib.gunzipSync(stored).toString(), NDJSON);
    const [listed] = await bucket.getFiles({ prefix: name });
    assert.equal(listed[0].metadata.contentEncoding, 'gzip', 'objects.list shows contentEncoding');
  }
});

test('@google-cloud/storage downloads a gzip object: decompressed by default, stored bytes with decompress:false, hashes validated', async () => {
  const f = bucket.file('gz/dl.json');
  await f.save(NDJSON, { gzip: true, resumable: false, contentType: 'application/x-ndjson' });
  const stored = storedFile('gz/dl.json');
  for (const validation of ['crc32c', 'md5', true]) {
    const [plain] = await f.download({ validation });
    assert.equal(plain.toString(), NDJSON, `decompressed, validation ${validation}`);
    const [raw] = await f.download({ validation, decompress: false });
    assert.ok(raw.equals(stored), `decompress:false gives the stored bytes, validation ${validation}`);
  }
  // The client asks for gzip, gets the stored bytes and checks them against x-goog-hash: with
  // the hashes the decompressed bytes would have (what an emulator hashing the wrong bytes
  // would send), its validation fails.
  const mf = path.join(emu.data, 'gcs-meta', 'conf-bucket', encodeURIComponent('gz/dl.json') + '.json');
  const m = JSON.parse(fs.readFileSync(mf));
  Object.assign(m, { md5Hash: md5(Buffer.from(NDJSON)), crc32c: require('../../lib/crc32c').crc32cBase64(Buffer.from(NDJSON)) });
  fs.writeFileSync(mf, JSON.stringify(m));
  await emu.restart();
  for (const validation of ['crc32c', 'md5']) {
    await assert.rejects(f.download({ validation }), /did not match/, `hashes of the decompressed bytes do not validate (${validation})`);
  }
  await f.delete();
});

test('alt=media of a gzip object: transcoded without Accept-Encoding: gzip, stored bytes with it', async () => {
  const f = bucket.file('gz/wire.json');
  await f.save(NDJSON, { gzip: true, resumable: false, contentType: 'application/x-ndjson' });
  const stored = storedFile('gz/wire.json');
  const hash = `crc32c=${require('../../lib/crc32c').crc32cBase64(stored)},md5=${md5(stored)}`;
  for (const base of [`${emu.url}/storage/v1/b/conf-bucket/o/gz%2Fwire.json?alt=media`, `${emu.url}/download/storage/v1/b/conf-bucket/o/gz%2Fwire.json?alt=media`]) {
    // no Accept-Encoding, identity, and gzip refused with q=0: decompressed, no
    // Content-Encoding nor Content-Length (chunked), the stored encoding and length told
    for (const ae of [undefined, 'identity', 'gzip;q=0, identity']) {
      const r = await rawGet(base, ae ? { 'accept-encoding': ae } : {});
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), NDJSON, `transcoded for Accept-Encoding ${ae}`);
      assert.equal(r.headers['content-encoding'], undefined);
      assert.equal(r.headers['content-length'], undefined);
      assert.equal(r.headers['transfer-encoding'], 'chunked');
      assert.equal(r.headers['x-goog-stored-content-encoding'], 'gzip');
      assert.equal(r.headers['x-goog-stored-content-length'], String(stored.length));
      assert.equal(r.headers['x-goog-hash'], hash, 'x-goog-hash is that of the stored bytes');
      assert.equal(r.headers['content-type'], 'application/x-ndjson');
    }
    // a range on a transcoded reply is ignored: the whole object, 200
    let r = await rawGet(base, { range: 'bytes=10-19' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-range'], undefined);
    assert.equal(r.body.toString(), NDJSON);
    // accepting gzip (also among others, as curl and requests send it): the stored bytes
    for (const ae of ['gzip', 'deflate, gzip', 'gzip, deflate, br', 'x-gzip']) {
      r = await rawGet(base, { 'accept-encoding': ae });
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(stored), `stored bytes for Accept-Encoding ${ae}`);
      assert.equal(r.headers['content-encoding'], 'gzip');
      assert.equal(r.headers['content-length'], String(stored.length));
      assert.equal(r.headers['x-goog-stored-content-encoding'], 'gzip');
      assert.equal(r.headers['x-goog-hash'], hash);
    }
    // ... and a range applies to the stored bytes
    r = await rawGet(base, { 'accept-encoding': 'gzip', range: 'bytes=10-19' });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes 10-19/${stored.length}`);
    assert.ok(r.body.equals(stored.subarray(10, 20)));
    r = await rawGet(base, { 'accept-encoding': 'gzip', range: `bytes=${stored.length - 8}-` });
    assert.equal(r.status, 206);
    assert.ok(r.body.equals(stored.subarray(stored.length - 8)), 'the gzip trailer (CRC32, ISIZE) by range');
    r = await rawGet(base, { 'accept-encoding': 'gzip', range: `bytes=${stored.length}-` });
    assert.equal(r.status, 416, 'a range past the stored bytes');
  }
  // a plain object is never transcoded nor marked gzip
  await bucket.file('gz/plain.json').save(NDJSON, { resumable: false });
  const r = await rawGet(`${emu.url}/storage/v1/b/conf-bucket/o/gz%2Fplain.json?alt=media`, { 'accept-encoding': 'gzip' });
  assert.equal(r.body.toString(), NDJSON);
  assert.equal(r.headers['content-encoding'], undefined);
  assert.equal(r.headers['x-goog-stored-content-encoding'], 'identity');
});

test('Cache-Control: no-transform in the metadata stops transcoding', async () => {
  const f = bucket.file('gz/notransform.json');
  await f.save(NDJSON, { gzip: true, resumable: false, metadata: { cacheControl: 'public, no-transform' } });
  const r = await rawGet(`${emu.url}/storage/v1/b/conf-bucket/o/gz%2Fnotransform.json?alt=media`);
  assert.ok(r.body.equals(storedFile('gz/notransform.json')));
  assert.equal(r.headers['content-encoding'], 'gzip');
});

test('gzip uploads on the wire: media Content-Encoding is the object\'s, multipart Content-Encoding is transport', async () => {
  const gz = zlib.gzipSync(NDJSON);
  // media: the header is the object's encoding; stored and hashed as sent
  let r = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=media&name=gz%2Fmedia.json`, 'POST', gz,
    { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.contentEncoding, 'gzip', 'insert reply shows contentEncoding');
  assert.equal(r.json.size, String(gz.length));
  assert.equal(r.json.md5Hash, md5(gz));
  assert.ok(storedFile('gz/media.json').equals(gz));
  r = await call(`${emu.url}/storage/v1/b/conf-bucket/o/gz%2Fmedia.json`, 'GET');
  assert.equal(r.json.contentEncoding, 'gzip', 'objects.get shows contentEncoding');
  // multipart: contentEncoding in the metadata part; the media part stored as sent
  const boundary = 'b0undary';
  const mp = (meta, data) => Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n${JSON.stringify(meta)}\r\n--${boundary}\r\nContent-Type: application/x-ndjson\r\n\r\n`),
    data, Buffer.from(`\r\n--${boundary}--\r\n`)]);
  r = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=multipart`, 'POST',
    mp({ name: 'gz/mp.json', contentEncoding: 'gzip' }, gz), { 'content-type': `multipart/related; boundary=${boundary}` });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.contentEncoding, 'gzip');
  assert.equal(r.json.md5Hash, md5(gz));
  // a whole multipart request gzipped for transport (as the Java client sends them) is
  // decoded first: the object is what the media part holds
  r = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=multipart`, 'POST',
    zlib.gzipSync(mp({ name: 'gz/mp-transport.json' }, Buffer.from(NDJSON))),
    { 'content-type': `multipart/related; boundary=${boundary}`, 'content-encoding': 'gzip' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.contentEncoding, undefined);
  assert.equal(storedFile('gz/mp-transport.json').toString(), NDJSON);
  // resumable: contentEncoding from the session's metadata
  const start = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=resumable&name=gz%2Fres.json`, 'POST',
    { contentEncoding: 'gzip', contentType: 'application/x-ndjson' });
  assert.equal(start.status, 200);
  r = await call(start.headers.get('location'), 'PUT', gz, { 'content-range': `bytes 0-${gz.length - 1}/${gz.length}` });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.contentEncoding, 'gzip');
  assert.equal(r.json.crc32c, require('../../lib/crc32c').crc32cBase64(gz));
  assert.equal((await rawGet(`${emu.url}/storage/v1/b/conf-bucket/o/gz%2Fres.json?alt=media`)).body.toString(), NDJSON);
  // another encoding is never transcoded: the stored bytes with their Content-Encoding
  const br = zlib.brotliCompressSync(NDJSON);
  r = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=media&name=gz%2Fbr.json`, 'POST', br, { 'content-encoding': 'br' });
  assert.equal(r.json.contentEncoding, 'br');
  const b = await rawGet(`${emu.url}/storage/v1/b/conf-bucket/o/gz%2Fbr.json?alt=media`);
  assert.ok(b.body.equals(br));
  assert.equal(b.headers['content-encoding'], 'br');
  assert.equal(b.headers['x-goog-stored-content-encoding'], 'br');
  // a contentEncoding that is not a string is refused
  r = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=multipart`, 'POST',
    mp({ name: 'gz/bad-meta.json', contentEncoding: 7 }, gz), { 'content-type': `multipart/related; boundary=${boundary}` });
  assert.equal(r.status, 400);
});

test('a corrupt gzip object: a transcoding download fails clearly, the stored bytes stay readable, the emulator lives', async () => {
  const gz = zlib.gzipSync(NDJSON);
  const cases = { 'gz/not-gzip.json': Buffer.from('{"a":1}\n'), 'gz/truncated.json': gz.subarray(0, gz.length - 30),
    'gz/bad-crc.json': Buffer.concat([gz.subarray(0, gz.length - 8), Buffer.alloc(8, 0xff)]) };
  for (const [name, bytes] of Object.entries(cases)) {
    const r = await call(`${emu.url}/upload/storage/v1/b/conf-bucket/o?uploadType=media&name=${encodeURIComponent(name)}`, 'POST', bytes,
      { 'content-encoding': 'gzip', 'content-type': 'application/x-ndjson' });
    assert.equal(r.status, 200, r.text);
    const t = await rawGet(`${emu.url}/storage/v1/b/conf-bucket/o/${encodeURIComponent(name)}?alt=media`);
    assert.equal(t.status, 500, `${name}: transcoding fails`);
    const err = JSON.parse(t.body.toString()).error;
    assert.match(err.message, /not valid gzip/, name);
    assert.ok(err.message.includes(name), 'the message names the object');
    const s = await rawGet(`${emu.url}/storage/v1/b/conf-bucket/o/${encodeURIComponent(name)}?alt=media`, { 'accept-encoding': 'gzip' });
    assert.equal(s.status, 200);
    assert.ok(s.body.equals(bytes), `${name}: stored bytes as they are`);
    // the official client asks for the stored bytes (their hashes match) and fails inflating them
    await assert.rejects(bucket.file(name).download(), (e) => /header|unexpected end|check|incorrect/i.test(e.message), `${name}: the client fails`);
  }
  assert.equal((await call(`${emu.url}/_emulator/health`, 'GET')).status, 200);
});
