'use strict';
// Fault injection through /_emulator/faults, and the official clients reacting to it.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('net');
const { startEmulator, call } = require('./helpers');

let emu; let bq; let storage;
before(async () => {
  emu = await startEmulator(['--project', 'fp', '--topic', 'events', '--subscription', 'events-sub', '--bucket', 'fault-bucket']);
  process.env.BIGQUERY_EMULATOR_HOST = emu.url + '/bigquery/v2';
  process.env.STORAGE_EMULATOR_HOST = emu.url;
  process.env.GCE_METADATA_HOST = emu.url.replace('http://', '');
  process.env.METADATA_SERVER_DETECTION = 'assume-present';
  const { BigQuery } = require('@google-cloud/bigquery');
  const { Storage } = require('@google-cloud/storage');
  bq = new BigQuery({ projectId: 'fp' });
  storage = new Storage({ projectId: 'fp' });
  await bq.createDataset('fds');
  await bq.dataset('fds').createTable('t', { schema: [{ name: 'id', type: 'STRING' }, { name: 'kind', type: 'STRING' }] });
});
after(async () => { await emu.stop(); });

const pubUrl = () => `${emu.url}/v1/projects/fp/topics/events:publish`;
const msg = { messages: [{ data: 'eA==' }] };

test('status X for the next N calls, with the API error body; counters see them', async () => {
  await emu.admin('DELETE', '/_emulator/counters');
  const r = await emu.admin('POST', '/_emulator/faults', { op: 'pubsub.topics.publish', status: 503, count: 2 });
  assert.equal(r.rules[0].count, 2);
  const a = await call(pubUrl(), 'POST', msg);
  const b = await call(pubUrl(), 'POST', msg);
  const c = await call(pubUrl(), 'POST', msg);
  assert.deepEqual([a.status, b.status, c.status], [503, 503, 200]);
  assert.equal(a.json.error.status, 'UNAVAILABLE');
  const counters = await emu.admin('GET', '/_emulator/counters');
  assert.deepEqual(counters['pubsub.topics.publish'], { calls: 3, statuses: { 200: 1, 503: 2 } });
});

test('/_emulator/bytes: request bytes per op (line, headers, body as sent), reset with the counters', async () => {
  await emu.admin('DELETE', '/_emulator/counters');
  const body = JSON.stringify(msg);
  await call(pubUrl(), 'POST', msg);
  await call(pubUrl(), 'POST', msg);
  const got = await emu.admin('GET', '/_emulator/bytes');
  assert.equal(got['pubsub.topics.publish'].requests, 2);
  // each request: its body plus at least "POST <path> HTTP/1.1" and a Content-Type header
  const min = 2 * (body.length + 'POST /v1/projects/fp/topics/events:publish HTTP/1.1\r\n'.length + 'Content-Type: application/json\r\n'.length);
  assert.ok(got['pubsub.topics.publish'].bytes >= min, `${got['pubsub.topics.publish'].bytes} < ${min}`);
  assert.ok(got['pubsub.topics.publish'].bytes < min + 2 * 600, 'headers counted once');
  assert.equal(got['admin.bytes.get'], undefined);
  await emu.admin('DELETE', '/_emulator/counters');
  assert.deepEqual(await emu.admin('GET', '/_emulator/bytes'), {});
});

test('path regex + method + skip; BigQuery error envelope; client retries a 503', async () => {
  await emu.admin('POST', '/_emulator/faults', { method: 'POST', path: '/insertAll$', status: 503, count: 1, skip: 1 });
  await bq.dataset('fds').table('t').insert([{ id: '1' }]); // skipped by the rule
  await bq.dataset('fds').table('t').insert([{ id: '2' }]); // gets a 503, the client retries
  const counters = await emu.admin('GET', '/_emulator/counters');
  assert.equal(counters['bigquery.tabledata.insertAll'].statuses['503'], 1);
  const [rows] = await bq.dataset('fds').table('t').getRows();
  assert.deepEqual(rows.map((r) => r.id).sort(), ['1', '2']);
  await emu.admin('POST', '/_emulator/faults', { op: 'bigquery.tables.get', status: 403, reason: 'quotaExceeded', message: 'Quota exceeded' });
  const r = await call(`${emu.url}/bigquery/v2/projects/fp/datasets/fds/tables/t`, 'GET');
  assert.equal(r.status, 403);
  assert.deepEqual(r.json.error.errors[0], { message: 'Quota exceeded', domain: 'global', reason: 'quotaExceeded' });
});

test('reject rows in insertAll by index and by field value', async () => {
  await emu.admin('POST', '/_emulator/faults', { op: 'bigquery.tabledata.insertAll', rejectRows: { indexes: [1] } });
  const url = `${emu.url}/bigquery/v2/projects/fp/datasets/fds/tables/t/insertAll`;
  let r = await call(url, 'POST', { skipInvalidRows: true, rows: [{ json: { id: 'a' } }, { json: { id: 'b' } }] });
  assert.deepEqual(r.json.insertErrors.map((e) => [e.index, e.errors[0].reason]), [[1, 'invalid']]);
  await emu.admin('POST', '/_emulator/faults', { op: 'bigquery.tabledata.insertAll', rejectRows: { field: 'kind', equals: 'poison' }, count: -1 });
  r = await call(url, 'POST', { rows: [{ json: { id: 'c', kind: 'ok' } }, { json: { id: 'd', kind: 'poison' } }] });
  assert.deepEqual(r.json.insertErrors.map((e) => [e.index, e.errors[0].reason]), [[0, 'stopped'], [1, 'invalid']]);
  await emu.admin('DELETE', '/_emulator/faults');
  r = await call(url, 'POST', { rows: [{ json: { id: 'e', kind: 'poison' } }] });
  assert.equal(r.json.insertErrors, undefined);
});

test('latency, stall (then answer), reset before and after', async () => {
  await emu.admin('POST', '/_emulator/faults', { op: 'pubsub.topics.get', latencyMs: 300 });
  let t0 = Date.now();
  assert.equal((await call(`${emu.url}/v1/projects/fp/topics/events`, 'GET')).status, 200);
  assert.ok(Date.now() - t0 >= 290);
  await emu.admin('POST', '/_emulator/faults', { op: 'pubsub.topics.get', stall: 0.5 });
  t0 = Date.now();
  assert.equal((await call(`${emu.url}/v1/projects/fp/topics/events`, 'GET')).status, 200);
  assert.ok(Date.now() - t0 >= 480);
  await emu.admin('POST', '/_emulator/faults', { op: 'pubsub.topics.get', reset: 'before' });
  await assert.rejects(call(`${emu.url}/v1/projects/fp/topics/events`, 'GET'));
  // reset after: the publish happens but the reply is lost
  const before = (await emu.admin('GET', '/_emulator/state')).subscriptions['projects/fp/subscriptions/events-sub'].backlog;
  await emu.admin('POST', '/_emulator/faults', { op: 'pubsub.topics.publish', reset: 'after' });
  await assert.rejects(call(pubUrl(), 'POST', msg));
  const afterN = (await emu.admin('GET', '/_emulator/state')).subscriptions['projects/fp/subscriptions/events-sub'].backlog;
  assert.equal(afterN, before + 1);
});

test('stall forever holds the connection open without a reply', async () => {
  await emu.admin('POST', '/_emulator/faults', { op: 'storage.buckets.get', stall: true });
  const ac = new AbortController();
  const p = fetch(`${emu.url}/storage/v1/b/fault-bucket`, { signal: ac.signal });
  const res = await Promise.race([p.then(() => 'answered', () => 'error'), new Promise((r) => setTimeout(() => r('pending'), 700))]);
  assert.equal(res, 'pending');
  ac.abort();
  await p.catch(() => {});
  assert.equal((await call(`${emu.url}/storage/v1/b/fault-bucket`, 'GET')).status, 200, 'rule consumed');
});

test('storage client retries a 503 on a conditional upload; 429 too', async () => {
  await emu.admin('POST', '/_emulator/faults', { op: 'storage.objects.insert.*', status: 503, count: 1 });
  await storage.bucket('fault-bucket').file('r.txt').save('x', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
  await emu.admin('POST', '/_emulator/faults', { glob: '/b/fault-bucket/o/*', status: 429, count: 1 });
  const [m] = await storage.bucket('fault-bucket').file('r.txt').getMetadata();
  assert.equal(m.size, '1');
});

test('bad rules are refused; rules list and delete by id; keep-alive survives errors', async () => {
  await emu.admin('DELETE', '/_emulator/faults');
  const bad = await call(`${emu.url}/_emulator/faults`, 'POST', { op: 'x' });
  assert.equal(bad.status, 400);
  const r = await emu.admin('POST', '/_emulator/faults', { op: 'never.*', status: 500, count: -1 });
  const id = r.rules[0].id;
  assert.equal((await emu.admin('GET', '/_emulator/faults')).rules.length, 1);
  await emu.admin('DELETE', `/_emulator/faults/${id}`);
  assert.equal((await emu.admin('GET', '/_emulator/faults')).rules.length, 0);
  // Several requests, including errors, over one raw keep-alive connection.
  const sock = net.connect(emu.port, '127.0.0.1');
  await new Promise((res) => sock.once('connect', res));
  let got = '';
  sock.on('data', (d) => { got += d; });
  const reqs = ['GET /v1/projects/fp/topics/events HTTP/1.1\r\nHost: x\r\n\r\n',
    'POST /v1/projects/fp/topics/events:publish HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}',
    'GET /v1/projects/fp/topics/nope HTTP/1.1\r\nHost: x\r\n\r\n'];
  sock.write(reqs.join(''));
  for (let i = 0; i < 50 && (got.match(/HTTP\/1.1 \d{3}/g) || []).length < 3; i++) await new Promise((res) => setTimeout(res, 100));
  sock.destroy();
  assert.deepEqual([...got.matchAll(/HTTP\/1.1 (\d{3})/g)].map((m) => m[1]), ['200', '400', '404'], got);
});
