'use strict';
// Unit checks of the emulator's own pieces (schema coercions, timestamps, DDL reader, CRC32C)
// and transport checks (TLS with HTTP/2 and HTTP/1.1, gzip request bodies, error envelopes).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http2 = require('http2');
const https = require('https');
const zlib = require('zlib');
const schema = require('../../lib/schema');
const { parseDdl } = require('../../lib/ddl');
const { crc32cBase64 } = require('../../lib/crc32c');
const { startEmulator, call } = require('./helpers');

const fields = schema.normalizeFields([
  { name: 'i', type: 'INT64' }, { name: 'f', type: 'FLOAT' }, { name: 'b', type: 'BOOL' }, { name: 't', type: 'TIMESTAMP' },
  { name: 'j', type: 'JSON' }, { name: 'r', type: 'RECORD', mode: 'REQUIRED', fields: [{ name: 's', type: 'STRING' }] },
  { name: 'a', type: 'STRING', mode: 'REPEATED' }, { name: 'd', type: 'DATE' },
]);
const v = schema.compileRecord(fields);
const check = (row, ignoreUnknown = false) => {
  const ctx = { ignoreUnknown };
  const out = v(row, ctx, '');
  return out === schema.FAIL ? { fail: ctx.msg, loc: ctx.loc } : out;
};

test('json_exact.parse: JSON.parse, but integers from 2^53 on as BigInt with their digits', () => {
  const { parse } = require('../../lib/json_exact');
  assert.deepEqual(parse('{"a":9007199254740993,"b":[-9223372036854775808,1.5,"12345678901234567",9007199254740992,1e400]}'),
    { a: 9007199254740993n, b: [-9223372036854775808n, 1.5, '12345678901234567', 9007199254740992n, Infinity] });
  assert.equal(parse(' 12345678901234567890 '), 12345678901234567890n);
  assert.equal(parse('[12345678901234567.0]')[0], 12345678901234568, 'a fraction or exponent stays a double');
  // the same values as JSON.parse otherwise, escapes, "__proto__" as an own key included
  const text = '{"s":"a\\"b\\\\c\\u00e9\\ud83d\\ude00\\n","n":[0,-0,0.1,-1.5e-7,1234567890123456],' +
    '"o":{"__proto__":{"x":1},"t":true,"f":false,"z":null},"e":{},"l":[], "w" : [ 1 , 2 ] }';
  assert.deepEqual(parse(text + ' 1234567890123456'.slice(0, 0)), JSON.parse(text));
  const withBig = text.replace('"w"', '"big":9007199254740993,"w"');
  const got = parse(withBig);
  assert.equal(got.big, 9007199254740993n);
  delete got.big;
  assert.deepEqual(got, JSON.parse(text));
  assert.equal(Object.getPrototypeOf(got.o), Object.prototype);
  assert.deepEqual(Object.keys(got.o), ['__proto__', 't', 'f', 'z']);
  // what JSON.parse refuses, refused (the long number sends each to the exact reader)
  for (const bad of ['{"a":9007199254740993,}', '[9007199254740993,]', '{"a":09007199254740993}',
    '[9007199254740993', '[9007199254740993] x', '{"a":9007199254740993,"b":"\u0001"}',
    '{"a":9007199254740993,"b":"\\x"}', '{a:1,"b":9007199254740993}', '[9007199254740993,tru]',
    '[9007199254740993,-]', '[9007199254740993,1.]', '"unterminated', '[9007199254740993,"x]']) {
    assert.throws(() => JSON.parse(bad), SyntaxError, bad);
    assert.throws(() => parse(bad), SyntaxError, bad);
  }
});

test('insertAll coercions of integers past 2^53 (BigInt from json_exact)', () => {
  assert.equal(check({ r: {}, i: 9007199254740993n }).i, '9007199254740993');
  assert.equal(check({ r: {}, i: 9223372036854775807n }).i, '9223372036854775807');
  assert.match(check({ r: {}, i: 9223372036854775808n }).fail, /bad value\): 9223372036854775808$/);
  assert.match(check({ r: {}, i: 2 ** 63 }).fail, /bad value\): 9223372036854776000$/, 'the double 2^63 is past INT64');
  assert.equal(check({ r: {}, i: 2 ** 62 }).i, '4611686018427387904', 'a whole double: its exact value');
  assert.equal(check({ r: {}, f: 9007199254740993n }).f, 9007199254740992);
  assert.deepEqual(check({ r: { s: 9007199254740993n } }).r, { s: '9007199254740993' });
  assert.match(check({ r: {}, b: 9007199254740993n }).fail, /boolean \(bad value\): 9007199254740993/);
  assert.match(check({ r: {}, t: 9007199254740993n }).fail, /out of range: 9007199254740993/);
});

test('insertAll coercions accepted as BigQuery does', () => {
  assert.deepEqual(check({ i: '42', f: '1.5', b: 'true', t: '2024-01-02 03:04:05.123456+01:00', j: '{"a":1}', r: { s: 1 }, a: ['x'], d: '2024-02-29' }),
    { i: '42', f: 1.5, b: true, t: '2024-01-02T02:04:05.123456Z', j: '{"a":1}', r: { s: '1' }, a: ['x'], d: '2024-02-29' });
  assert.equal(check({ r: {}, t: 0 }).t, '1970-01-01T00:00:00.000000Z');
  assert.equal(check({ r: {}, t: '2024-01-02T03:04:05Z' }).t, '2024-01-02T03:04:05.000000Z');
  assert.equal(check({ r: {}, t: '2024-01-02 03:04:05 UTC' }).t, '2024-01-02T03:04:05.000000Z');
  assert.equal(check({ r: {}, t: 1704164645.25 }).t, '2024-01-02T03:04:05.250000Z');
  assert.equal(check({ r: {}, i: 3.0 }).i, '3');
  assert.equal(check({ r: {}, i: '-9223372036854775808' }).i, '-9223372036854775808');
  assert.deepEqual(check({ r: {}, zz: 1 }, true), { r: {} });
  assert.deepEqual(check({ r: {}, a: null }), { r: {} });
  assert.deepEqual(check({ R: {}, I: 1 }), { r: {}, i: '1' }, 'column names are case-insensitive');
});

test('insertAll rejections', () => {
  const bad = [
    [{ r: {}, i: 3.5 }, 'i'], [{ r: {}, i: 'abc' }, 'i'], [{ r: {}, i: '9223372036854775808' }, 'i'], [{ r: {}, i: true }, 'i'],
    [{ r: {}, f: true }, 'f'], [{ r: {}, b: 'yes' }, 'b'], [{ r: {}, t: 1704164645000 }, 't'], [{ r: {}, t: '2024-13-01' }, 't'],
    [{ r: {}, t: '2024-01-02T03:04:05.1234567Z' }, 't'], [{ r: {}, j: '{bad' }, 'j'], [{ r: {}, j: { a: 1 } }, 'j'],
    [{}, 'r'], [{ r: null }, 'r'], [{ r: 'x' }, 'r'], [{ r: { zz: 1 } }, 'r.zz'], [{ r: {}, a: ['x', null] }, 'a'],
    [{ r: {}, a: 'x' }, 'a'], [{ r: {}, i: [1] }, 'i'], [{ r: {}, d: '2023-02-29' }, 'd'], [{ r: {}, unknown: 1 }, 'unknown'],
  ];
  for (const [row, loc] of bad) {
    const r = check(row);
    assert.ok(r.fail, `${JSON.stringify(row)} should fail`);
    assert.equal(r.loc, loc, JSON.stringify(row));
  }
});

test('timestamp output formats', () => {
  const row = { r: {}, t: '2024-04-30T18:40:00.123456Z' };
  const stored = check(row);
  const idx = fields.findIndex((f) => f.name === 't');
  assert.equal(schema.formatRow(fields, stored, 'FLOAT64').f[idx].v, '1.714502400123456E9');
  assert.equal(schema.formatRow(fields, stored, 'INT64').f[idx].v, '1714502400123456');
  assert.equal(schema.formatRow(fields, stored, 'ISO8601_STRING').f[idx].v, '2024-04-30T18:40:00.123456Z');
  assert.equal(schema.tsToFloatString(1714500000, 0), '1.7145E9');
  assert.equal(schema.tsToFloatString(0, 0), '0.0');
  assert.equal(schema.tsToFloatString(12, 500000), '12.5');
  const repIdx = fields.findIndex((f) => f.name === 'a');
  assert.deepEqual(schema.formatRow(fields, { r: { s: 'x' } }, 'INT64').f[repIdx], { v: [] });
});

test('DDL reader: nested types, NOT NULL, options, partitioning, clustering', () => {
  const [t] = parseDdl(`-- c
    CREATE TABLE IF NOT EXISTS \`proj.ds.t\` (
      id STRING NOT NULL OPTIONS(description="the id"),
      n NUMERIC(10, 2), s STRING(20),
      tags ARRAY<STRING>,
      nested ARRAY<STRUCT<a INT64, b STRUCT<c BOOL, d ARRAY<FLOAT64>>>>,
      ts TIMESTAMP
    ) PARTITION BY TIMESTAMP_TRUNC(ts, HOUR) CLUSTER BY id OPTIONS(description='tbl', partition_expiration_days=2);`);
  assert.equal(t.project, 'proj');
  assert.equal(t.dataset, 'ds');
  const f = t.body.schema.fields;
  assert.deepEqual(f[0], { name: 'id', type: 'STRING', mode: 'REQUIRED', description: 'the id' });
  assert.deepEqual(f[1], { name: 'n', type: 'NUMERIC', mode: 'NULLABLE', precision: '10', scale: '2' });
  assert.equal(f[2].maxLength, '20');
  assert.deepEqual(f[3], { name: 'tags', type: 'STRING', mode: 'REPEATED' });
  assert.equal(f[4].mode, 'REPEATED');
  assert.equal(f[4].fields[1].fields[1].mode, 'REPEATED');
  assert.deepEqual(t.body.timePartitioning, { type: 'HOUR', field: 'ts', expirationMs: '172800000' });
  assert.deepEqual(t.body.clustering, { fields: ['id'] });
  assert.throws(() => parseDdl('CREATE TABLE x.y (a INT64'), /expected|end/);
  assert.throws(() => parseDdl('CREATE TABLE x.y (a INT64) PARTITION BY DATE(zz)'), /not in the table/);
  const all = fs.readdirSync(path.resolve(__dirname, '../../../../ddl')).filter((x) => x.endsWith('.sql'));
  for (const file of all) parseDdl(fs.readFileSync(path.resolve(__dirname, '../../../../ddl', file), 'utf8'));
});

test('CRC32C is the Castagnoli checksum, big-endian base64', () => {
  assert.equal(crc32cBase64(Buffer.from('hello world')), 'yZRlqg==');
  assert.equal(crc32cBase64(Buffer.alloc(0)), 'AAAAAA==');
  const b = Buffer.from('123456789');
  assert.equal(Buffer.from(crc32cBase64(b), 'base64').readUInt32BE(), 0xe3069283);
});

test('gzip request bodies, bad JSON, unknown paths, bare /projects BigQuery path', async () => {
  const emu = await startEmulator(['--project', 'up']);
  try {
    let r = await call(`${emu.url}/projects/up/datasets`, 'POST', zlib.gzipSync(JSON.stringify({ datasetReference: { datasetId: 'gz' } })), { 'content-encoding': 'gzip' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id, 'up:gz');
    r = await call(`${emu.url}/bigquery/v2/projects/up/datasets`, 'POST', '[1,2');
    assert.equal(r.status, 400);
    assert.deepEqual(Object.keys(r.json.error).sort(), ['code', 'errors', 'message', 'status']);
    assert.equal(r.json.error.errors[0].domain, 'global');
    r = await call(`${emu.url}/bigquery/v2/projects/up/datasets/gz`, 'DELETE');
    assert.equal(r.status, 204);
    r = await call(`${emu.url}/nothing/here`, 'GET');
    assert.equal(r.status, 404);
    r = await call(`${emu.url}/v1/projects/up/topics/%E0%A4%A`, 'GET');
    assert.equal(r.status, 400);
    r = await call(`${emu.url}/v1/projects/..%2F..%2Fescape/topics/abcd`, 'PUT', {});
    assert.equal(r.status, 400, 'a project id cannot leave the data folder');
    r = await call(`${emu.url}/_emulator/ddl?project=..%2Fx`, 'POST', 'CREATE TABLE d.t (a INT64)');
    assert.equal(r.status, 400);
    await call(`${emu.url}/storage/v1/b`, 'POST', { name: 'up-bucket' });
    r = await call(`${emu.url}/upload/storage/v1/b/up-bucket/o?uploadType=media&name=${encodeURIComponent('../../../escape.txt')}`, 'POST', 'x');
    assert.equal(r.status, 200);
    assert.ok(!fs.existsSync(path.join(emu.data, '..', 'escape.txt')) && !fs.existsSync(path.join(emu.data, 'escape.txt')));
    assert.equal(await (await fetch(`${emu.url}/b/up-bucket/o/${encodeURIComponent('../../../escape.txt')}?alt=media`)).text(), 'x');
    r = await call(`${emu.url}/storage/v1/b?project=up`, 'POST', { name: 'Bad_Bucket!' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.status, undefined, 'GCS leaves status out');
  } finally { await emu.stop(); }
});

test('TLS: HTTPS with HTTP/2 (ALPN h2) and HTTP/1.1 fallback, verified with a CA file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emu-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
    '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const ca = fs.readFileSync(path.join(dir, 'cert.pem'));
  const emu = await startEmulator(['--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem'), '--project', 'tp', '--topic', 'tls-topic']);
  try {
    assert.match(emu.url, /^https:/);
    const client = http2.connect(emu.url, { ca });
    const body = await new Promise((resolve, reject) => {
      const req = client.request({ ':path': '/v1/projects/tp/topics/tls-topic', ':method': 'GET' });
      let d = '';
      req.on('data', (c) => { d += c; });
      req.on('end', () => resolve(d));
      req.on('error', reject);
      req.end();
    });
    client.close();
    assert.equal(JSON.parse(body).name, 'projects/tp/topics/tls-topic');
    const h1 = await new Promise((resolve, reject) => {
      https.get(emu.url + '/v1/projects/tp/topics/tls-topic', { ca }, (res) => {
        let d = ''; res.on('data', (c) => { d += c; }); res.on('end', () => resolve([res.httpVersion, d]));
      }).on('error', reject);
    });
    assert.equal(h1[0], '1.1');
    assert.equal(JSON.parse(h1[1]).name, 'projects/tp/topics/tls-topic');
  } finally { await emu.stop(); }
});

test('never a 500 or a crash on bad input (small fuzz over every endpoint)', async () => {
  const emu = await startEmulator(['--project', 'fz', '--topic', 'fz-topic', '--subscription', 'fz-sub', '--bucket', 'fz-bucket',
    '--ddl', path.resolve(__dirname, '../../../../ddl'), '--dataset', 'fz_ds']);
  try {
    const ep = [
      ['PUT', '/v1/projects/fz/topics/new-topic'], ['POST', '/v1/projects/fz/topics/fz-topic:publish'],
      ['PUT', '/v1/projects/fz/subscriptions/new-sub'], ['PATCH', '/v1/projects/fz/subscriptions/fz-sub'],
      ['POST', '/v1/projects/fz/subscriptions/fz-sub:pull'], ['POST', '/v1/projects/fz/subscriptions/fz-sub:acknowledge'],
      ['POST', '/v1/projects/fz/subscriptions/fz-sub:modifyAckDeadline'], ['POST', '/bigquery/v2/projects/fz/datasets'],
      ['POST', '/bigquery/v2/projects/fz/datasets/fz_ds/tables'], ['POST', '/bigquery/v2/projects/fz/datasets/fz_ds/tables/order_events/insertAll'],
      ['GET', '/bigquery/v2/projects/fz/datasets/fz_ds/tables/order_events/data?maxResults=-1&pageToken=%%%'],
      ['POST', '/storage/v1/b'], ['POST', '/upload/storage/v1/b/fz-bucket/o?uploadType=multipart'],
      ['POST', '/upload/storage/v1/b/fz-bucket/o?uploadType=resumable&name=x'], ['PUT', '/upload/storage/v1/b/fz-bucket/o?uploadType=resumable&upload_id=nope'],
      ['POST', '/token'], ['POST', '/_emulator/faults'], ['POST', '/_emulator/ddl'], ['POST', '/_emulator/sa-keys'], ['POST', '/_emulator/config'],
    ];
    const bodies = ['', '{', 'null', '[]', '"s"', '42', '{"messages":null}', '{"messages":[null,1,"x"]}', '{"messages":[{"data":123,"attributes":[1]}]}',
      '{"maxMessages":"lots"}', '{"ackIds":[1,null,{}],"ackDeadlineSeconds":"x"}', '{"rows":[null,{"json":[]},{"json":{"items":[{"quantity":{}}]}}]}',
      '{"datasetReference":{"datasetId":{}}}', '{"tableReference":{"tableId":"t x"},"schema":{"fields":[{"name":"1a","type":"BOGUS"}]}}',
      '{"schema":{"fields":"x"},"tableReference":{"tableId":"ok"}}', '{"topic":{},"ackDeadlineSeconds":1e9,"deadLetterPolicy":7}',
      '{"subscription":{"ackDeadlineSeconds":-1},"updateMask":"ackDeadlineSeconds"}', '{"name":["b"]}', '{"status":"x"}', '\u0000\u00ff'];
    for (const [m, p] of ep) {
      for (const b of bodies) {
        const r = await call(emu.url + p, m, m === 'GET' ? undefined : b, { 'content-type': p.includes('multipart') ? 'multipart/related; boundary=zz' : 'application/json' });
        assert.ok(r.status < 500, `${m} ${p} ${JSON.stringify(b)} -> ${r.status} ${r.text.slice(0, 200)}`);
      }
    }
    assert.equal((await call(emu.url + '/_emulator/health', 'GET')).status, 200);
  } finally { await emu.stop(); }
});
