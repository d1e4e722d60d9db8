'use strict';
// State survives a restart (even kill -9), and lives in files a person can read.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { startEmulator, call } = require('./helpers');

const DDL = path.resolve(__dirname, '../../../../ddl');
let emu;
before(async () => { emu = await startEmulator(['--project', 'pp', '--dataset', 'events_ds', '--ddl', DDL, '--topic', 'events', '--subscription', 'events-sub', '--bucket', 'persist-bucket']); });
after(async () => { await emu.stop(); });

test('pubsub, bigquery and gcs state survive kill -9 and restart', async () => {
  const u = () => emu.url;
  const pub = await call(`${u()}/v1/projects/pp/topics/events:publish`, 'POST', { messages: [{ data: 'YQ==' }, { data: 'Yg==' }, { data: 'Yw==' }] });
  const pulled = await call(`${u()}/v1/projects/pp/subscriptions/events-sub:pull`, 'POST', { maxMessages: 1 });
  await call(`${u()}/v1/projects/pp/subscriptions/events-sub:acknowledge`, 'POST', { ackIds: [pulled.json.receivedMessages[0].ackId] });
  const ins = await call(`${u()}/bigquery/v2/projects/pp/datasets/events_ds/tables/inventory_events/insertAll`, 'POST', { rows: [{ insertId: 'i1', json: { inventory_id: 'x', quantity_change: '-5', timestamp: '2025-03-01T12:34:56+02:00' } }] });
  assert.equal(ins.json.insertErrors, undefined);
  await call(`${u()}/upload/storage/v1/b/persist-bucket/o?uploadType=media&name=raw%2Forder%2F2025%2Fa.json`, 'POST', '{"x":1}\n');

  // Inspectable files
  const rows = fs.readFileSync(path.join(emu.data, 'bigquery/pp/events_ds/inventory_events.ndjson'), 'utf8').trim().split('\n');
  assert.deepEqual(JSON.parse(rows[0]), { inventory_id: 'x', quantity_change: '-5', timestamp: '2025-03-01T10:34:56.000000Z' });
  assert.ok(fs.existsSync(path.join(emu.data, 'bigquery/pp/events_ds/inventory_events.table.json')));
  assert.equal(fs.readFileSync(path.join(emu.data, 'gcs/persist-bucket/raw/order/2025/a.json'), 'utf8'), '{"x":1}\n');

  await emu.restart('SIGKILL');
  const again = await call(`${u()}/v1/projects/pp/subscriptions/events-sub:pull`, 'POST', { maxMessages: 10 });
  const ids = again.json.receivedMessages.map((m) => m.message.messageId).sort();
  assert.deepEqual(ids, pub.json.messageIds.filter((id) => id !== pulled.json.receivedMessages[0].message.messageId).sort(), 'unacked messages come back, acked ones do not');
  const list = await call(`${u()}/bigquery/v2/projects/pp/datasets/events_ds/tables/inventory_events/data`, 'GET');
  assert.equal(list.json.totalRows, '1');
  const obj = await call(`${u()}/storage/v1/b/persist-bucket/o/raw%2Forder%2F2025%2Fa.json`, 'GET');
  assert.equal(obj.json.size, '8');
  const media = await fetch(`${u()}/b/persist-bucket/o/raw%2Forder%2F2025%2Fa.json?alt=media`);
  assert.equal(await media.text(), '{"x":1}\n');
  // new ids stay unique after the restart
  const pub2 = await call(`${u()}/v1/projects/pp/topics/events:publish`, 'POST', { messages: [{ data: 'ZA==' }] });
  assert.ok(!pub.json.messageIds.includes(pub2.json.messageIds[0]));
  // a second startup with --ddl keeps existing tables and rows (IF NOT EXISTS)
  await emu.restart();
  assert.equal((await call(`${u()}/bigquery/v2/projects/pp/datasets/events_ds/tables/inventory_events/data`, 'GET')).json.totalRows, '1');
});
