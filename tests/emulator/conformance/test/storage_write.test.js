'use strict';
// The BigQuery Storage Write API (gRPC, h2c) against Google's own Node client,
// @google-cloud/bigquery-storage: its managed writer (WriterClient, JSONWriter) on the default
// stream and on created streams, offsets, row errors, schema updates, and a plain gRPC client
// (@grpc/grpc-js with the package's protos) for the wire-level faults. Rows are read back
// with tabledata.list (@google-cloud/bigquery), which is what `bq head` calls.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { startEmulator } = require('./helpers');

const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
require('protobufjs/ext/descriptor');
const { managedwriter, adapt } = require('@google-cloud/bigquery-storage');
const { WriterClient, JSONWriter } = managedwriter;

const P = 'swp';
const DS = 'sw';
const V1 = 'google.cloud.bigquery.storage.v1';

let emu; let bq; let client;
before(async () => {
  emu = await startEmulator(['--project', P]);
  assert.ok(emu.grpc, 'the emulator serves gRPC (the npm packages are installed)');
  process.env.BIGQUERY_EMULATOR_HOST = emu.url + '/bigquery/v2';
  process.env.METADATA_SERVER_DETECTION = 'none';
  const { BigQuery } = require('@google-cloud/bigquery');
  bq = new BigQuery({ projectId: P });
  await bq.createDataset(DS);
  client = newWriterClient();
});
after(async () => { if (client) client.close(); await emu.stop(); });

// What google-apis.md §7 says the Node client needs for a local server.
function newWriterClient() {
  return new WriterClient({ projectId: P, apiEndpoint: '127.0.0.1', port: emu.grpcPort, sslCreds: grpc.credentials.createInsecure() });
}

const SCHEMA = [
  { name: 'id', type: 'STRING', mode: 'REQUIRED' },
  { name: 'n', type: 'INTEGER' },
  { name: 'x', type: 'FLOAT' },
  { name: 'ok', type: 'BOOLEAN' },
  { name: 'ts', type: 'TIMESTAMP' },
  { name: 'day', type: 'DATE' },
  { name: 'dt', type: 'DATETIME' },
  { name: 'amount', type: 'NUMERIC' },
  { name: 'raw', type: 'BYTES' },
  { name: 'attrs', type: 'JSON' },
  { name: 'tags', type: 'STRING', mode: 'REPEATED' },
  { name: 'addr', type: 'RECORD', fields: [{ name: 'city', type: 'STRING' }, { name: 'zip', type: 'INTEGER' }] },
  { name: 'items', type: 'RECORD', mode: 'REPEATED', fields: [{ name: 'sku', type: 'STRING' }, { name: 'qty', type: 'INTEGER' }] },
];

let tableNo = 0;
async function newTable(schema = SCHEMA) {
  const id = `t${++tableNo}`;
  await bq.dataset(DS).createTable(id, { schema });
  return { id, parent: `projects/${P}/datasets/${DS}/tables/${id}` };
}
function descriptorFor(schema) {
  return adapt.convertStorageSchemaToProto2Descriptor(adapt.convertBigQuerySchemaToStorageTableSchema({ fields: schema }), 'root');
}
async function rowsOf(id) {
  const [rows] = await bq.dataset(DS).table(id).getRows({ wrapIntegers: true });
  return rows;
}
async function rawRows(id) {
  const r = await fetch(`${emu.url}/bigquery/v2/projects/${P}/datasets/${DS}/tables/${id}/data?formatOptions.useInt64Timestamp=true`);
  return (await r.json()).rows || [];
}

test('start-up prints the gRPC address after the REST one; health names the port', async () => {
  assert.match(emu.stdout, /^listening on http:\/\/127\.0\.0\.1:\d+\ngrpc on 127\.0\.0\.1:\d+ \(h2c\)\n/);
  const h = await emu.admin('GET', '/_emulator/health');
  assert.equal(h.grpcPort, emu.grpcPort);
});

test('JSONWriter on the default stream: every type lands exactly, visible to tabledata.list', async () => {
  const t = await newTable();
  const conn = await client.createStreamConnection({ streamId: managedwriter.DefaultStream, destinationTable: t.parent });
  assert.equal(conn.getStreamId(), `${t.parent}/streams/_default`);
  const w = new JSONWriter({ connection: conn, protoDescriptor: descriptorFor(SCHEMA) });
  const r1 = await w.appendRows([{
    id: 'a', n: '9007199254740993', x: 1.5, ok: true, ts: new Date('2024-05-06T07:08:09.123Z'),
    day: new Date('2024-05-06'), dt: '2024-05-06 07:08:09.123456', amount: '12345678901234567890.123456789',
    raw: Buffer.from([0, 1, 2, 255]), attrs: '{"k":[1,2]}', tags: ['x', 'y'],
    addr: { city: 'Oslo', zip: 150 }, items: [{ sku: 's1', qty: 2 }, { sku: 's2', qty: -3 }],
  }, { id: 'b' }]).getResult();
  assert.equal(r1.error ?? null, null);
  assert.deepEqual(r1.rowErrors, []);
  assert.equal(r1.appendResult.offset, null, 'no offset on the default stream');
  assert.equal(r1.writeStream, `${t.parent}/streams/_default`);
  const r2 = await w.appendRows([{ id: 'c', n: -1 }]).getResult();
  assert.equal(r2.error ?? null, null);
  conn.close();
  const rows = await rawRows(t.id);
  assert.equal(rows.length, 3);
  const v = rows[0].f.map((c) => c.v);
  assert.deepEqual(v.slice(0, 10), ['a', '9007199254740993', '1.5', 'true', '1714979289123000', '2024-05-06',
    '2024-05-06 07:08:09.123456', '12345678901234567890.123456789', Buffer.from([0, 1, 2, 255]).toString('base64'), '{"k":[1,2]}']);
  assert.deepEqual(v[10], [{ v: 'x' }, { v: 'y' }]);
  assert.deepEqual(v[11], { f: [{ v: 'Oslo' }, { v: '150' }] });
  assert.deepEqual(v[12], [{ v: { f: [{ v: 's1' }, { v: '2' }] } }, { v: { f: [{ v: 's2' }, { v: '-3' }] } }]);
  assert.deepEqual(rows[1].f.map((c) => c.v).slice(0, 2), ['b', null]);
  assert.deepEqual(rows[2].f.map((c) => c.v).slice(0, 2), ['c', '-1']);
  const viaClient = await rowsOf(t.id);
  assert.deepEqual(viaClient.map((r) => r.id), ['a', 'b', 'c']);
});

test('committed stream: offsets, ALREADY_EXISTS / OUT_OF_RANGE with StorageError, finalize returns row_count', async () => {
  const t = await newTable();
  const full = await client.createWriteStreamFullResponse({ streamType: managedwriter.CommittedStream, destinationTable: t.parent });
  assert.match(full.name, new RegExp(`^${t.parent}/streams/[A-Za-z0-9_-]+$`));
  assert.equal(full.type, 'COMMITTED');
  assert.ok(full.createTime && full.commitTime, 'a COMMITTED stream has a commit_time');
  assert.deepEqual(full.tableSchema.fields.map((f) => [f.name, f.type, f.mode]).slice(0, 3),
    [['id', 'STRING', 'REQUIRED'], ['n', 'INT64', 'NULLABLE'], ['x', 'DOUBLE', 'NULLABLE']]);
  const conn = await client.createStreamConnection({ streamId: full.name });
  const w = new JSONWriter({ connection: conn, protoDescriptor: descriptorFor(SCHEMA) });
  const a = await w.appendRows([{ id: 'r0' }, { id: 'r1' }], 0).getResult();
  assert.equal(a.appendResult.offset.value, '0');
  const b = await w.appendRows([{ id: 'r2' }], 2).getResult();
  assert.equal(b.appendResult.offset.value, '2');
  // A retry of rows already written: ALREADY_EXISTS, nothing written twice.
  const dup = await w.appendRows([{ id: 'r2' }], 2).getResult();
  assert.equal(dup.error.code, grpc.status.ALREADY_EXISTS);
  assert.match(dup.error.message, /expected offset 3, received 2/);
  const se = storageErrorOf(dup.error);
  assert.equal(se.code, 'OFFSET_ALREADY_EXISTS');
  assert.equal(se.entity, full.name);
  // A gap: OUT_OF_RANGE, and the stream keeps going at the expected offset.
  const gap = await w.appendRows([{ id: 'r9' }], 9).getResult();
  assert.equal(gap.error.code, grpc.status.OUT_OF_RANGE);
  assert.equal(storageErrorOf(gap.error).code, 'OFFSET_OUT_OF_RANGE');
  const c = await w.appendRows([{ id: 'r3' }], 3).getResult();
  assert.equal(c.appendResult.offset.value, '3');
  const fin = await conn.finalize();
  assert.equal(String(fin.rowCount), '4');
  // After finalize: appends are refused in-band with STREAM_FINALIZED; finalize stays answerable.
  const conn2 = await client.createStreamConnection({ streamId: full.name });
  const w2 = new JSONWriter({ connection: conn2, protoDescriptor: descriptorFor(SCHEMA) });
  const late = await w2.appendRows([{ id: 'late' }], 4).getResult();
  assert.equal(late.error.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(storageErrorOf(late.error).code, 'STREAM_FINALIZED');
  conn2.close();
  const again = await client.finalizeWriteStream({ name: full.name });
  assert.equal(String(again.rowCount), '4');
  assert.deepEqual((await rowsOf(t.id)).map((r) => r.id), ['r0', 'r1', 'r2', 'r3']);
  const got = await client.getWriteStream({ streamId: full.name, view: 'FULL' });
  assert.equal(got.name, full.name);
  assert.ok(got.tableSchema, 'FULL view carries the table schema');
  const basic = await client.getWriteStream({ streamId: full.name });
  assert.equal(basic.tableSchema, null, 'BASIC view does not');
});

test('row errors: only the bad rows are listed, nothing of the request is written, the rest goes in again', async () => {
  const t = await newTable();
  const conn = await client.createStreamConnection({ streamId: managedwriter.DefaultStream, destinationTable: t.parent });
  const w = new JSONWriter({ connection: conn, protoDescriptor: descriptorFor(SCHEMA) });
  const rows = [{ id: 'ok1' }, { n: 5 }, { id: 'ok2', amount: 'twelve' }, { id: 'ok3', attrs: '{bad' }, { id: 'ok4', day: new Date('2024-01-01') }];
  const r = await w.appendRows(rows).getResult();
  assert.equal(r.error.code, grpc.status.INVALID_ARGUMENT);
  assert.match(r.error.message, /^Errors found while processing rows\. Please refer to the row_errors field/);
  assert.deepEqual(r.rowErrors.map((e) => [String(e.index), e.code]), [['1', 'FIELDS_ERROR'], ['2', 'FIELDS_ERROR'], ['3', 'FIELDS_ERROR']]);
  assert.match(r.rowErrors[0].message, /Missing required field: id/);
  assert.match(r.rowErrors[1].message, /numeric/);
  assert.match(r.rowErrors[2].message, /JSON/);
  assert.equal((await rowsOf(t.id)).length, 0, 'a request with a bad row writes nothing');
  const bad = new Set(r.rowErrors.map((e) => Number(e.index)));
  const ok = await w.appendRows(rows.filter((_, i) => !bad.has(i))).getResult();
  assert.equal(ok.error ?? null, null);
  assert.deepEqual((await rowsOf(t.id)).map((x) => x.id), ['ok1', 'ok4']);
  // The fault rule that marks rows bad (as for insertAll), by field value.
  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', rejectRows: { field: 'id', equals: 'poison' } });
  const p = await w.appendRows([{ id: 'fine' }, { id: 'poison' }]).getResult();
  assert.deepEqual(p.rowErrors.map((e) => String(e.index)), ['1']);
  conn.close();
});

test('PENDING streams: rows invisible until BatchCommitWriteStreams, which needs them finalized', async () => {
  const t = await newTable();
  const id = await client.createWriteStream({ streamType: managedwriter.PendingStream, destinationTable: t.parent });
  const conn = await client.createStreamConnection({ streamId: id });
  const w = new JSONWriter({ connection: conn, protoDescriptor: descriptorFor(SCHEMA) });
  assert.equal((await w.appendRows([{ id: 'p0' }, { id: 'p1' }], 0).getResult()).appendResult.offset.value, '0');
  assert.equal((await rowsOf(t.id)).length, 0);
  const early = await client.batchCommitWriteStream({ parent: t.parent, writeStreams: [id] });
  assert.equal(early.commitTime, null);
  assert.equal(early.streamErrors[0].code, 'INVALID_STREAM_STATE');
  assert.equal(String((await conn.finalize()).rowCount), '2');
  const done = await client.batchCommitWriteStream({ parent: t.parent, writeStreams: [id] });
  assert.ok(done.commitTime, 'committed');
  assert.deepEqual(done.streamErrors, []);
  assert.deepEqual((await rowsOf(t.id)).map((r) => r.id), ['p0', 'p1']);
  const twice = await client.batchCommitWriteStream({ parent: t.parent, writeStreams: [id] });
  assert.equal(twice.streamErrors[0].code, 'STREAM_ALREADY_COMMITTED');
});

test('writer schema checks: an extra field is SCHEMA_MISMATCH_EXTRA_FIELDS; a table that gained a column sends updated_schema', async () => {
  const t = await newTable([{ name: 'id', type: 'STRING' }]);
  const conn = await client.createStreamConnection({ streamId: managedwriter.DefaultStream, destinationTable: t.parent });
  const extra = new JSONWriter({ connection: conn, protoDescriptor: descriptorFor([{ name: 'id', type: 'STRING' }, { name: 'nope', type: 'STRING' }]) });
  const r = await extra.appendRows([{ id: 'a', nope: 'b' }]).getResult();
  assert.equal(r.error.code, grpc.status.INVALID_ARGUMENT);
  assert.match(r.error.message, /extra fields: 'nope'/);
  assert.equal(storageErrorOf(r.error).code, 'SCHEMA_MISMATCH_EXTRA_FIELDS');
  extra.close();
  conn.close();
  const conn2 = await client.createStreamConnection({ streamId: managedwriter.DefaultStream, destinationTable: t.parent });
  const w = new JSONWriter({ connection: conn2, protoDescriptor: descriptorFor([{ name: 'id', type: 'STRING' }]) });
  assert.equal((await w.appendRows([{ id: 'before' }]).getResult()).error ?? null, null);
  await bq.dataset(DS).table(t.id).setMetadata({ schema: [{ name: 'id', type: 'STRING' }, { name: 'added', type: 'INTEGER' }] });
  const seen = new Promise((resolve) => conn2.onSchemaUpdated(resolve));
  const u = await w.appendRows([{ id: 'during' }]).getResult();
  assert.deepEqual(u.updatedSchema.fields.map((f) => f.name), ['id', 'added']);
  await seen;
  // JSONWriter takes the new schema (and reconnects): the new column can be written.
  const after = await w.appendRows([{ id: 'later', added: 7 }]).getResult();
  assert.equal(after.error ?? null, null);
  assert.equal(after.updatedSchema, null, 'updated_schema is sent once');
  const rows = await rowsOf(t.id);
  assert.deepEqual(rows.map((x) => [x.id, x.added === null ? null : String(x.added.value || x.added)]),
    [['before', null], ['during', null], ['later', '7']]);
  conn2.close();
});

test('unary calls: NOT_FOUND with the StorageError trailer, _default cannot be finalized, gax retries UNAVAILABLE', async () => {
  const t = await newTable();
  await assert.rejects(client.getWriteStream({ streamId: `${t.parent}/streams/nosuch` }), (e) => {
    assert.equal(e.code, grpc.status.NOT_FOUND);
    assert.equal(managedwriter.parseStorageErrors(e)[0].code, 3 /* STREAM_NOT_FOUND */);
    return true;
  });
  await assert.rejects(client.finalizeWriteStream({ name: `${t.parent}/streams/_default` }), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  const def = await client.getWriteStream({ streamId: `${t.parent}/streams/_default` });
  assert.equal(def.type, 'COMMITTED');
  await emu.admin('DELETE', '/_emulator/counters');
  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.GetWriteStream', grpcCode: 'UNAVAILABLE', count: 2 });
  const got = await client.getWriteStream({ streamId: `${t.parent}/streams/_default` });
  assert.equal(got.name, `${t.parent}/streams/_default`);
  const counters = await emu.admin('GET', '/_emulator/counters');
  assert.deepEqual(counters['bigquerystorage.GetWriteStream'].statuses, { UNAVAILABLE: 2, OK: 1 });
});

test('managed writer with write retries: GOAWAY and a dropped stream are survived, in-band errors reach the caller', async () => {
  const t = await newTable();
  const c = newWriterClient();
  c.enableWriteRetries(true);
  try {
    const conn = await c.createStreamConnection({ streamId: managedwriter.DefaultStream, destinationTable: t.parent });
    const w = new JSONWriter({ connection: conn, protoDescriptor: descriptorFor(SCHEMA) });
    assert.equal((await w.appendRows([{ id: 'g0' }]).getResult()).error ?? null, null);
    // GOAWAY before the append: unhandled, the call ends UNAVAILABLE, the client reconnects and resends.
    await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', goaway: 'before' });
    assert.equal((await w.appendRows([{ id: 'g1' }]).getResult()).error ?? null, null);
    // The stream dropped (RST_STREAM) before the append was handled: resent, written once.
    await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', reset: 'before' });
    assert.equal((await w.appendRows([{ id: 'g1b' }]).getResult()).error ?? null, null);
    // In-band RESOURCE_EXHAUSTED is not one the writer retries: it comes back as the result.
    await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', grpcCode: 'RESOURCE_EXHAUSTED', inband: true });
    const q = await w.appendRows([{ id: 'q' }]).getResult();
    assert.equal(q.error.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal((await w.appendRows([{ id: 'g2' }]).getResult()).error ?? null, null);
    conn.close();
    assert.deepEqual((await rowsOf(t.id)).map((r) => r.id), ['g0', 'g1', 'g1b', 'g2']);
  } finally { c.close(); }
});

// Google's bq, when installed, reads what the managed writer wrote (bq head = tabledata.list).
function onPath(tool) {
  return (process.env.PATH || '').split(':').some((d) => d && fs.existsSync(path.join(d, tool)));
}
test('bq head shows the rows appended over gRPC', { skip: onPath('bq') ? false : 'bq is not installed' }, async () => {
  const t = await newTable(SCHEMA);
  const conn = await client.createStreamConnection({ streamId: managedwriter.DefaultStream, destinationTable: t.parent });
  const w = new JSONWriter({ connection: conn, protoDescriptor: descriptorFor(SCHEMA) });
  assert.equal((await w.appendRows([{ id: 'h1', n: '-9223372036854775808', day: new Date('1969-12-31'), addr: { city: 'Ås' } }, { id: 'h2', ts: new Date(0) }]).getResult()).error ?? null, null);
  conn.close();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'bq-home-'));
  fs.writeFileSync(path.join(home, 'token'), 'emulator-token\n');
  const env = Object.assign({}, process.env, {
    HOME: home, CLOUDSDK_CONFIG: path.join(home, 'gcloud'), CLOUDSDK_AUTH_ACCESS_TOKEN_FILE: path.join(home, 'token'),
    CLOUDSDK_CORE_DISABLE_PROMPTS: '1', CLOUDSDK_CORE_DISABLE_USAGE_REPORTING: 'true',
  });
  delete env.GOOGLE_APPLICATION_CREDENTIALS;
  const out = await new Promise((resolve, reject) => execFile('bq', ['--api', emu.url, '--project_id', P, '--format', 'json', 'head', `${DS}.${t.id}`],
    { env, timeout: 120000 }, (e, stdout, stderr) => (e ? reject(new Error(`bq head: ${e.message}\n${stderr}`)) : resolve(stdout))));
  fs.rmSync(home, { recursive: true, force: true });
  const rows = JSON.parse(out);
  assert.deepEqual(rows.map((r) => [r.id, r.n, r.day, r.addr ? r.addr.city : null]), [['h1', '-9223372036854775808', '1969-12-31', 'Ås'], ['h2', null, null, null]]);
  assert.match(rows[1].ts, /^1970-01-01 00:00:00/);
});

// ---- the wire, with a plain gRPC client ---------------------------------------------------
const root = protobuf.Root.fromJSON(require('@google-cloud/bigquery-storage/build/protos/protos.json'));
const T = (n) => root.lookupType(`${V1}.${n}`);
const ser = (t) => (o) => Buffer.from(t.encode(t.fromObject(o)).finish());
const des = (t) => (b) => t.toObject(t.decode(b), { longs: String, enums: String, defaults: false });
const Raw = grpc.makeGenericClientConstructor({
  AppendRows: {
    path: `/${V1}.BigQueryWrite/AppendRows`, requestStream: true, responseStream: true,
    requestSerialize: ser(T('AppendRowsRequest')), responseDeserialize: des(T('AppendRowsResponse')),
  },
}, 'BigQueryWrite');

const ID_SCHEMA = [{ name: 'id', type: 'STRING', mode: 'REQUIRED' }];
function rawAppend(parent) {
  const desc = descriptorFor(ID_SCHEMA).toJSON();
  const D = root.lookupType('google.protobuf.DescriptorProto');
  const rowType = protobuf.Type.fromDescriptor(D.encode(D.fromObject(desc)).finish());
  new protobuf.Root().add(rowType);
  return (ids, offset) => {
    const req = {
      writeStream: `${parent}/streams/_default`,
      protoRows: { writerSchema: { protoDescriptor: desc }, rows: { serializedRows: ids.map((id) => rowType.encode({ id }).finish()) } },
    };
    if (offset !== undefined) req.offset = { value: String(offset) };
    return req;
  };
}
// Opens AppendRows, writes `reqs`, half-closes; resolves {responses, status} (status: the error, or OK).
function appendCall(reqs, opts = {}) {
  const raw = new Raw(`127.0.0.1:${opts.port || emu.grpcPort}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    const responses = [];
    const callOpts = opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {};
    const md = new grpc.Metadata();
    if (opts.token) md.set('authorization', `Bearer ${opts.token}`);
    const call = raw.AppendRows(md, callOpts);
    let settled = false;
    const end = (status) => { if (settled) return; settled = true; raw.close(); resolve({ responses, status }); };
    call.on('data', (d) => responses.push(d));
    call.on('error', (e) => end({ code: e.code, details: e.details, metadata: e.metadata }));
    call.on('status', (s) => { if (s.code === 0) end({ code: 0, details: s.details }); });
    for (const r of reqs) call.write(r);
    call.end();
  });
}

test('wire faults: Trailers-Only status, reset after the write, GOAWAY after the answer, stall past a deadline, no grpc-status, HTTP 502', async () => {
  const t = await newTable(ID_SCHEMA);
  const req = rawAppend(t.parent);
  const base = (await appendCall([req(['w0'])]));
  assert.equal(base.status.code, 0);
  assert.equal(base.responses.length, 1);

  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', grpcCode: 'UNAVAILABLE', message: 'try later' });
  let r = await appendCall([req(['x'])]);
  assert.deepEqual([r.status.code, r.status.details, r.responses.length], [grpc.status.UNAVAILABLE, 'try later', 0]);

  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', reset: 'after' });
  r = await appendCall([req(['w1'])]);
  assert.notEqual(r.status.code, 0, 'a dropped stream is an error');
  assert.equal(r.responses.length, 0);

  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', goaway: 'after' });
  r = await appendCall([req(['w2'])]);
  assert.equal(r.responses.length, 1, 'answered before going away');
  assert.equal(r.status.code, grpc.status.UNAVAILABLE);
  assert.match(r.status.details, /server is restarted/);

  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', stall: true });
  r = await appendCall([req(['x'])], { deadlineMs: 1500 });
  assert.equal(r.status.code, grpc.status.DEADLINE_EXCEEDED);

  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', noStatus: true });
  r = await appendCall([req(['x'])]);
  assert.notEqual(r.status.code, 0, 'a reply without grpc-status is an error');

  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', httpStatus: 502 });
  r = await appendCall([req(['x'])]);
  assert.equal(r.status.code, grpc.status.UNAVAILABLE, 'HTTP 502 maps to UNAVAILABLE in gRPC clients');

  // skip + count: the 2nd append of a connection fails in-band, the 1st and 3rd are written.
  await emu.admin('POST', '/_emulator/faults', { op: 'bigquerystorage.AppendRows', grpcCode: 'INTERNAL', inband: true, skip: 1 });
  r = await appendCall([req(['w3']), req(['x']), req(['w4'])]);
  assert.equal(r.status.code, 0);
  assert.deepEqual(r.responses.map((x) => (x.error ? x.error.code : 0)), [0, grpc.status.INTERNAL, 0]);

  // Rows written: w0, w1 (reset after the write), w2 (GOAWAY after), w3, w4.
  assert.deepEqual((await rowsOf(t.id)).map((x) => x.id), ['w0', 'w1', 'w2', 'w3', 'w4']);
  const counters = await emu.admin('GET', '/_emulator/counters');
  assert.ok(counters['bigquerystorage.AppendRows'].statuses.UNAVAILABLE >= 2);
});

test('protocol errors end the call: no stream name, no writer schema, unknown table, offset on _default, auth', async () => {
  const t = await newTable(ID_SCHEMA);
  const req = rawAppend(t.parent);
  const noName = req(['a']); delete noName.writeStream;
  let r = await appendCall([noName]);
  assert.equal(r.status.code, grpc.status.INVALID_ARGUMENT);
  const noSchema = req(['a']); delete noSchema.protoRows.writerSchema;
  r = await appendCall([noSchema]);
  assert.equal(r.status.code, grpc.status.INVALID_ARGUMENT);
  assert.match(r.status.details, /writer_schema/);
  // Later requests may leave the schema out (and the stream name).
  const later = req(['b']); delete later.protoRows.writerSchema; delete later.writeStream;
  r = await appendCall([req(['a']), later]);
  assert.deepEqual([r.status.code, r.responses.length], [0, 2]);
  r = await appendCall([rawAppend(`projects/${P}/datasets/${DS}/tables/nosuch`)(['a'])]);
  assert.equal(r.status.code, grpc.status.NOT_FOUND);
  r = await appendCall([req(['a'], 0)]);
  assert.equal(r.responses[0].error.code, grpc.status.INVALID_ARGUMENT);
  assert.match(r.responses[0].error.message, /default stream/);
  assert.deepEqual((await rowsOf(t.id)).map((x) => x.id), ['a', 'b']);
  // With --auth, the bearer token in the call's metadata is checked as on the REST port.
  const secure = await startEmulator(['--auth', '--project', P]);
  try {
    r = await appendCall([req(['a'])], { port: secure.grpcPort });
    assert.equal(r.status.code, grpc.status.UNAUTHENTICATED);
    const tok = (await secure.admin('POST', '/_emulator/tokens', {})).access_token;
    r = await appendCall([req(['a'])], { port: secure.grpcPort, token: tok });
    assert.equal(r.status.code, grpc.status.NOT_FOUND, 'past auth: the table is not in this emulator');
  } finally { await secure.stop(); }
});

test('storage-decode decodes rows as AppendRows does (for differential tests of encoders)', async () => {
  const schema = [{ name: 'id', type: 'STRING', mode: 'REQUIRED' }, { name: 'ts', type: 'TIMESTAMP' }, { name: 'day', type: 'DATE' },
    { name: 'n', type: 'INTEGER', mode: 'REPEATED' }, { name: 'r', type: 'RECORD', fields: [{ name: 'b', type: 'BYTES' }] }];
  const desc = descriptorFor(schema).toJSON();
  const D = root.lookupType('google.protobuf.DescriptorProto');
  const bytes = D.encode(D.fromObject(desc)).finish();
  const type = protobuf.Type.fromDescriptor(bytes);
  new protobuf.Root().add(type).resolveAll();
  const rows = [
    type.encode({ id: 'a', ts: '-1', day: -719162, n: ['9223372036854775807', '-2'], r: { b: Buffer.from('hi') } }).finish(),
    Buffer.from([0x10, 0x05]), // ts = 5 without the REQUIRED id
    Buffer.from([0xff]),
  ];
  const input = JSON.stringify({ schema, descriptor: Buffer.from(bytes).toString('base64'), rows: rows.map((r) => Buffer.from(r).toString('base64')) });
  const out = await new Promise((resolve, reject) => {
    const p = execFile(process.execPath, [path.resolve(__dirname, '../../storage-decode')], (e, stdout, stderr) => (e ? reject(new Error(stderr)) : resolve(JSON.parse(stdout))));
    p.stdin.end(input);
  });
  assert.deepEqual(out.rows[0], { stored: { id: 'a', ts: '1969-12-31T23:59:59.999999Z', day: '0001-01-01', n: ['9223372036854775807', '-2'], r: { b: 'aGk=' } } });
  assert.deepEqual(out.rows[1], { error: 'Missing required field: id.' });
  assert.match(out.rows[2].error, /Could not parse the row/);
});

function storageErrorOf(status) {
  const d = (status.details || []).find((x) => /StorageError$/.test(x.type_url));
  assert.ok(d, 'a StorageError detail');
  const se = T('StorageError');
  return se.toObject(se.decode(d.value), { enums: String });
}
