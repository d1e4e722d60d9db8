'use strict';
// @google-cloud/bigquery against the emulator, with auth on and tokens from the emulator's
// metadata server (GCE_METADATA_HOST), as a client on GCE would get them.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const { startEmulator, call } = require('./helpers');

let emu; let bq;
before(async () => {
  emu = await startEmulator(['--auth', '--project', 'conf-proj']);
  process.env.GCE_METADATA_HOST = emu.url.replace('http://', '');
  process.env.METADATA_SERVER_DETECTION = 'assume-present';
  process.env.BIGQUERY_EMULATOR_HOST = emu.url + '/bigquery/v2';
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
  const { BigQuery } = require('@google-cloud/bigquery');
  bq = new BigQuery({ projectId: 'conf-proj' });
});
after(async () => { await emu.stop(); });

const SCHEMA = [
  { name: 'id', type: 'STRING', mode: 'REQUIRED' },
  { name: 'n', type: 'INT64' },
  { name: 'x', type: 'FLOAT64' },
  { name: 'ok', type: 'BOOL' },
  { name: 'ts', type: 'TIMESTAMP' },
  { name: 'attrs', type: 'JSON' },
  { name: 'items', type: 'RECORD', mode: 'REPEATED', fields: [{ name: 'sku', type: 'STRING' }, { name: 'qty', type: 'INTEGER' }] },
  { name: 'addr', type: 'STRUCT', fields: [{ name: 'city', type: 'STRING' }] },
];

test('create dataset and table, get metadata back', async () => {
  const [ds] = await bq.createDataset('conf_ds', { location: 'US' });
  assert.equal(ds.id, 'conf_ds');
  await assert.rejects(bq.createDataset('conf_ds'), (e) => e.code === 409);
  const [table] = await ds.createTable('t1', {
    schema: SCHEMA, timePartitioning: { type: 'DAY', field: 'ts' }, clustering: { fields: ['id'] }, description: 'conformance',
  });
  const [meta] = await table.getMetadata();
  assert.equal(meta.schema.fields[1].type, 'INTEGER');
  assert.equal(meta.schema.fields[6].mode, 'REPEATED');
  assert.deepEqual(meta.timePartitioning, { type: 'DAY', field: 'ts' });
  assert.deepEqual(meta.clustering, { fields: ['id'] });
  assert.equal(meta.description, 'conformance');
  const [exists] = await ds.table('nope').exists();
  assert.equal(exists, false);
});

test('insert rows and list them back with the client\'s own decoding', async () => {
  const table = bq.dataset('conf_ds').table('t1');
  await table.insert([
    { id: 'a', n: 1, x: 1.5, ok: true, ts: new Date('2024-01-02T03:04:05.678Z'), attrs: JSON.stringify({ k: 'v' }), items: [{ sku: 's1', qty: 2 }], addr: { city: 'Oslo' } },
    { id: 'b', n: '9007199254740993', ts: '2024-01-02 03:04:05 UTC' },
    { id: 'c', ts: 1704164645.5 },
  ]);
  const [rows] = await table.getRows();
  assert.equal(rows.length, 3);
  const a = rows.find((r) => r.id === 'a');
  assert.equal(a.n, 1);
  assert.equal(a.x, 1.5);
  assert.equal(a.ok, true);
  assert.equal(a.ts.value, '2024-01-02T03:04:05.678Z');
  assert.deepEqual(a.items, [{ sku: 's1', qty: 2 }]);
  assert.deepEqual(a.addr, { city: 'Oslo' });
  const b = rows.find((r) => r.id === 'b');
  assert.equal(b.ts.value, '2024-01-02T03:04:05.000Z');
  const c = rows.find((r) => r.id === 'c');
  assert.equal(c.ts.value, '2024-01-02T03:04:05.500Z');
  const [page] = await table.getRows({ maxResults: 2, autoPaginate: false });
  assert.equal(page.length, 2);
});

test('a wrong type is rejected with PartialFailureError (invalid/stopped)', async () => {
  const table = bq.dataset('conf_ds').table('t1');
  let err;
  try {
    await table.insert([{ id: 'ok1', n: 5 }, { id: 'bad', n: 'not-a-number' }], { partialRetries: 0 });
  } catch (e) { err = e; }
  assert.ok(err, 'insert should fail');
  assert.equal(err.name, 'PartialFailureError');
  const reasons = err.errors.map((e) => [e.row.id, e.errors[0].reason]).sort();
  assert.deepEqual(reasons, [['bad', 'invalid'], ['ok1', 'stopped']]);
  // skipInvalidRows stores the good row
  await assert.rejects(table.insert([{ id: 'ok2' }, { id: 'bad2', ok: 'maybe' }], { skipInvalidRows: true, partialRetries: 0 }),
    (e) => e.name === 'PartialFailureError' && e.errors.length === 1);
  const [rows] = await table.getRows();
  assert.ok(rows.some((r) => r.id === 'ok2'));
  assert.ok(!rows.some((r) => r.id === 'ok1'));
});

test('unknown fields rejected unless ignoreUnknownValues; required fields enforced', async () => {
  const table = bq.dataset('conf_ds').table('t1');
  await assert.rejects(table.insert([{ id: 'u', zzz: 1 }], { partialRetries: 0 }), /PartialFailureError|no such field/);
  await table.insert([{ id: 'u2', zzz: 1 }], { ignoreUnknownValues: true });
  await assert.rejects(table.insert([{ n: 1 }], { partialRetries: 0 }), (e) => /Missing required field: id/.test(e.errors[0].errors[0].message));
});

test('insertId de-duplication (raw insertAll)', async () => {
  const token = (await call(emu.url + '/computeMetadata/v1/instance/service-accounts/default/token', 'GET', undefined, { 'Metadata-Flavor': 'Google' })).json.access_token;
  const url = emu.url + '/bigquery/v2/projects/conf-proj/datasets/conf_ds/tables/t1/insertAll';
  const body = { rows: [{ insertId: 'dup-1', json: { id: 'dup' } }] };
  for (let i = 0; i < 3; i++) {
    const r = await call(url, 'POST', body, { authorization: 'Bearer ' + token });
    assert.equal(r.status, 200);
    assert.equal(r.json.insertErrors, undefined);
  }
  const list = await call(emu.url + '/bigquery/v2/projects/conf-proj/datasets/conf_ds/tables/t1/data', 'GET', undefined, { authorization: 'Bearer ' + token });
  assert.equal(list.json.rows.filter((r) => r.f[0].v === 'dup').length, 1);
  // 10 MB request limit
  const big = { rows: [{ json: { id: 'x'.repeat(11 * 1024 * 1024) } }] };
  const r = await call(url, 'POST', big, { authorization: 'Bearer ' + token });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.errors[0].reason, 'invalid');
});

test('INT64 past 2^53 is kept exact from insertAll to tabledata.list (raw insertAll)', async () => {
  // JSON.parse would read 9007199254740993 as 9007199254740992; the service keeps INT64 exact
  // and lists it as a string
  const token = (await call(emu.url + '/computeMetadata/v1/instance/service-accounts/default/token', 'GET', undefined, { 'Metadata-Flavor': 'Google' })).json.access_token;
  const auth = { authorization: 'Bearer ' + token };
  const base = emu.url + '/bigquery/v2/projects/conf-proj/datasets/conf_ds/tables/t1';
  const body = '{"rows":[{"json":{"id":"big1","n":9007199254740993,"x":9007199254740993,' +
    '"items":[{"sku":"s","qty":-9223372036854775808}]}},{"json":{"id":"big2","n":9223372036854775807}},' +
    '{"json":{"id":9007199254740995}}]}';
  const r = await call(base + '/insertAll', 'POST', body, auth);
  assert.equal(r.status, 200);
  assert.equal(r.json.insertErrors, undefined);
  const list = await call(base + '/data', 'GET', undefined, auth);
  const row = (id) => list.json.rows.find((x) => x.f[0].v === id);
  assert.equal(row('big1').f[1].v, '9007199254740993');
  assert.equal(row('big1').f[2].v, '9007199254740992', 'a FLOAT64 column gets the nearest double');
  assert.equal(row('big1').f[6].v[0].v.f[1].v, '-9223372036854775808');
  assert.equal(row('big2').f[1].v, '9223372036854775807');
  assert.ok(row('9007199254740995'), 'a STRING column takes the digits');
  // past the int64 range: refused, the value quoted exactly
  for (const [n, quoted] of [['9223372036854775808', '9223372036854775808'],
    ['-9223372036854775809', '-9223372036854775809'], ['9223372036854775808.0', '9223372036854776000']]) {
    const bad = await call(base + '/insertAll', 'POST', `{"rows":[{"json":{"id":"over","n":${n}}}]}`, auth);
    assert.equal(bad.status, 200);
    assert.equal(bad.json.insertErrors[0].errors[0].reason, 'invalid', n);
    assert.equal(bad.json.insertErrors[0].errors[0].message, `Cannot convert value to integer (bad value): ${quoted}`);
  }
});

test('tables from the project DDL (ddl/*.sql)', async () => {
  const fs = require('fs');
  const dir = path.resolve(__dirname, '../../../../ddl');
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.sql'))) {
    const r = await emu.admin('POST', '/_emulator/ddl?project=conf-proj&dataset=ddl_ds', fs.readFileSync(path.join(dir, f), 'utf8'));
    assert.equal(r.created.length, 1, JSON.stringify(r));
  }
  const [meta] = await bq.dataset('ddl_ds').table('order_events').getMetadata();
  const items = meta.schema.fields.find((f) => f.name === 'items');
  assert.equal(items.type, 'RECORD');
  assert.equal(items.mode, 'REPEATED');
  assert.deepEqual(items.fields.map((f) => f.type), ['STRING', 'STRING', 'INTEGER', 'FLOAT']);
  assert.deepEqual(meta.timePartitioning, { type: 'DAY', field: 'order_date' });
  assert.deepEqual(meta.clustering.fields, ['status', 'customer_id']);
  assert.match(meta.description, /order events/);
  await bq.dataset('ddl_ds').table('order_events').insert([{
    event_type: 'order', order_id: 'o1', customer_id: 'c1', order_date: '2025-03-01T12:34:56Z', status: 'pending',
    items: [{ product_id: 'p', product_name: 'n', quantity: 2, price: 1.25 }], shipping_address: { street: 's', city: 'c', country: 'NO' },
    total_amount: 2.5, ingestion_time: new Date(),
  }]);
  const [rows] = await bq.dataset('ddl_ds').table('order_events').getRows();
  assert.equal(rows[0].items[0].quantity, 2);
  const [rej] = await bq.dataset('ddl_ds').table('rejected_events').getMetadata();
  assert.equal(rej.schema.fields.find((f) => f.name === 'attributes').type, 'JSON');
});

test('tables.patch (setMetadata) adds NULLABLE columns and RECORD fields; refuses the rest', async () => {
  const ds = bq.dataset('conf_ds');
  const [table] = await ds.createTable('evolve', { schema: [
    { name: 'id', type: 'STRING', mode: 'REQUIRED' }, { name: 'n', type: 'INT64' },
    { name: 'addr', type: 'RECORD', fields: [{ name: 'city', type: 'STRING' }] },
  ] });
  const [meta0] = await table.getMetadata();
  const grown = meta0.schema.fields.map((f) => Object.assign({}, f));
  grown[2] = Object.assign({}, grown[2], { fields: [...grown[2].fields, { name: 'zip', type: 'STRING' }] });
  grown.push({ name: 'note', type: 'STRING' }, { name: 'tags', type: 'STRING', mode: 'REPEATED' });
  const [patched] = await table.setMetadata({ schema: { fields: grown } });
  assert.deepEqual(patched.schema.fields.map((f) => f.name), ['id', 'n', 'addr', 'note', 'tags']);
  const [meta] = await table.getMetadata();
  assert.deepEqual(meta.schema.fields.map((f) => f.name), ['id', 'n', 'addr', 'note', 'tags']);
  assert.deepEqual(meta.schema.fields[2].fields.map((f) => f.name), ['city', 'zip']);
  // rows with the new columns are accepted now
  await table.insert([{ id: 'a', note: 'new', tags: ['x'], addr: { city: 'Oslo', zip: '0150' } }]);
  const [rows] = await table.getRows();
  assert.equal(rows[0].note, 'new');
  assert.deepEqual(rows[0].addr, { city: 'Oslo', zip: '0150' });
  // REQUIRED may be relaxed to NULLABLE
  const relaxed = meta.schema.fields.map((f) => (f.name === 'id' ? Object.assign({}, f, { mode: 'NULLABLE' }) : f));
  await table.setMetadata({ schema: { fields: relaxed } });
  const refused = async (fields, re) => {
    await assert.rejects(table.setMetadata({ schema: { fields } }), (e) => e.code === 400 && re.test(e.message));
  };
  const base = relaxed;
  await refused(base.filter((f) => f.name !== 'note'),
    /^Provided Schema does not match Table conf-proj:conf_ds\.evolve\. Field note is missing in new schema$/);
  await refused(base.map((f) => (f.name === 'note' ? Object.assign({}, f, { type: 'INTEGER' }) : f)),
    /Field note has changed type from STRING to INTEGER/);
  await refused([...base, { name: 'must', type: 'STRING', mode: 'REQUIRED' }],
    /Cannot add required fields to an existing schema\. \(field: must\)/);
  await refused(base.map((f) => (f.name === 'n' ? Object.assign({}, f, { mode: 'REQUIRED' }) : f)),
    /Field n has changed mode from NULLABLE to REQUIRED/);
  await refused(base.map((f) => (f.name === 'addr' ? Object.assign({}, f, { fields: [] }) : f)), /RECORD/);
  const [after] = await table.getMetadata();
  assert.deepEqual(after.schema.fields.map((f) => f.name), ['id', 'n', 'addr', 'note', 'tags']);
  // PUT (tables.update) follows the same rules
  const token = (await call(emu.url + '/computeMetadata/v1/instance/service-accounts/default/token', 'GET', undefined, { 'Metadata-Flavor': 'Google' })).json.access_token;
  const url = `${emu.url}/bigquery/v2/projects/conf-proj/datasets/conf_ds/tables/evolve`;
  const auth = { authorization: 'Bearer ' + token };
  let r = await call(url, 'PUT', { schema: { fields: base.filter((f) => f.name !== 'tags') } }, auth);
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /Field tags is missing in new schema/);
  r = await call(url, 'PUT', { schema: { fields: [...base, { name: 'more', type: 'BOOL' }] }, description: 'put' }, auth);
  assert.equal(r.status, 200);
  assert.equal(r.json.description, 'put');
  assert.equal(r.json.schema.fields.at(-1).type, 'BOOLEAN');
  await table.delete();
});

test('delete table and dataset', async () => {
  await bq.dataset('conf_ds').table('t1').delete();
  await assert.rejects(bq.dataset('conf_ds').table('t1').getMetadata(), (e) => e.code === 404);
  await bq.dataset('conf_ds').delete({ force: true });
  const [exists] = await bq.dataset('conf_ds').exists();
  assert.equal(exists, false);
});
