// proto_check.js - the differential half of test_proto_row.c: decodes the writer schemas and rows
// bepipe-lua's encoder wrote with protobufjs (the library Google's Node client and the emulator
// decode with), and compares every value with what the generator meant; then, when the emulator's
// Storage Write service is there (tests/emulator/lib/bigquery_write.js), has it decode them as
// its AppendRows does (decodeStandalone: the writer schema mapped onto the table's columns, the
// row checked against the table) and compares the rows it would store. Exit 0: all agree;
// 1: a difference (printed); 77: protobufjs is not installed (the test skips).
//   node proto_check.js CASES.json [DIR_WITH_NODE_MODULES] [EMULATOR_DIR]
'use strict';
const fs = require('fs');

let pb, desc;
for (const base of [process.argv[3], undefined]) {
  try {
    const opts = base ? {paths: [base]} : undefined;
    pb = require(require.resolve('protobufjs', opts));
    desc = require(require.resolve('protobufjs/ext/descriptor', opts));
    break;
  } catch (e) {
    pb = undefined;
  }
}
if (!pb) {
  console.log('protobufjs not found');
  process.exit(77);
}

const ProtoRows = new pb.Type('ProtoRows').add(new pb.Field('serialized_rows', 1, 'bytes',
                                                           'repeated'));
new pb.Root().add(ProtoRows);

const TYPE = {STRING: 'string', INT64: 'int64', FLOAT64: 'double', NUMERIC: 'string',
              BIGNUMERIC: 'string', BOOL: 'bool', TIMESTAMP: 'int64', DATE: 'int32',
              TIME: 'string', DATETIME: 'string', JSON: 'string', BYTES: 'bytes',
              GEOGRAPHY: 'string'};
const PACKED = {int64: true, int32: true, double: true, bool: true};
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

let failures = 0;
function fail(where, what) {
  if (failures++ < 20)
    console.log(`${where}: ${what}`);
}

// microseconds since the epoch of the generator's timestamp forms
function micros(e) {
  if (e.startsWith('U:'))
    return BigInt(e.slice(2));
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z$/.exec(e.slice(2));
  const d = new Date(0);
  d.setUTCFullYear(+m[1], +m[2] - 1, +m[3]);
  d.setUTCHours(+m[4], +m[5], +m[6], 0);
  return BigInt(d.getTime()) * 1000n + BigInt(m[7]);
}

function days(e) {
  const m = /^(\d{4})-(\d\d)-(\d\d)$/.exec(e);
  const d = new Date(0);
  d.setUTCFullYear(+m[1], +m[2] - 1, +m[3]);
  return Math.round(d.getTime() / 86400000);
}

function same(f, got, want, where) {
  switch (f.type) {
  case 'INT64':
    if (String(got) !== want) fail(where, `${got} != ${want}`);
    break;
  case 'TIMESTAMP':
    if (BigInt(String(got)) !== micros(want)) fail(where, `${got} != ${want} (${micros(want)})`);
    break;
  case 'DATE':
    if (got !== days(want)) fail(where, `${got} != ${want} (${days(want)})`);
    break;
  case 'FLOAT64':
    if (!Object.is(got, want)) fail(where, `${got} != ${want}`);
    break;
  case 'BYTES':
    if (!Buffer.from(got, 'base64').equals(Buffer.from(want, 'base64')))
      fail(where, `${got} != ${want}`);
    break;
  case 'RECORD':
    record(f.fields, f.proto, got, want, where);
    break;
  default:
    if (got !== want) fail(where, `${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  }
}

// checks the type's fields against the schema's columns (and keeps each RECORD's type)
function shape(fields, type, where) {
  fields.forEach((f, i) => {
    const pf = type.fieldsById[i + 1];
    const w = `${where}.${f.name}`;
    if (!pf) return fail(w, `no field ${i + 1}`);
    pf.resolve();
    if (IDENT.test(f.name) ? pf.name !== f.name : IDENT.test(pf.name) === false)
      fail(w, `field name ${pf.name}`);
    const rule = f.mode === 'REPEATED' ? 'repeated'
               : f.mode === 'REQUIRED' ? 'required' : undefined;
    if (pf.rule !== rule) fail(w, `rule ${pf.rule}`);
    if (f.type === 'RECORD') {
      if (!pf.resolvedType) return fail(w, 'RECORD type not resolved');
      f.proto = pf.resolvedType;
      shape(f.fields, pf.resolvedType, w);
    } else if (pf.type !== TYPE[f.type]) {
      fail(w, `type ${pf.type} for ${f.type}`);
    }
    if (f.mode === 'REPEATED' && !!pf.packed !== !!PACKED[pf.type]) fail(w, `packed ${pf.packed}`);
  });
  if (type.fieldsArray.length !== fields.length) fail(where, 'field count');
}

function record(fields, type, got, want, where) {
  fields.forEach((f, i) => {
    const name = type.fieldsById[i + 1].name;
    const g = got[name], w = want[f.name], at = `${where}.${f.name}`;
    if (f.mode === 'REPEATED') {
      const wl = Array.isArray(w) ? w : [];     // an empty array is encoded as {}
      const gl = g || [];
      if (gl.length !== wl.length) return fail(at, `${gl.length} values, not ${wl.length}`);
      wl.forEach((x, k) => same(f, gl[k], x, `${at}[${k}]`));
    } else if (w === undefined) {
      if (g !== undefined) fail(at, `${JSON.stringify(g)} where none was written`);
    } else if (g === undefined) {
      fail(at, 'missing');
    } else {
      same(f, g, w, at);
    }
  });
}

// The emulator's stored form: INT64 digits, TIMESTAMP "YYYY-MM-DDTHH:MM:SS.ffffffZ", DATE as is,
// BYTES base64, NULLs and empty arrays left out.
function sameStored(f, got, want, where) {
  switch (f.type) {
  case 'TIMESTAMP':
    if (typeof got !== 'string' || micros('S:' + got) !== micros(want))
      fail(where, `stored ${got} != ${want}`);
    break;
  case 'DATE':
    if (got !== want) fail(where, `stored ${got} != ${want}`);
    break;
  case 'RECORD':
    stored(f.fields, got, want, where);
    break;
  default:
    same(f, got, want, where);
  }
}

function stored(fields, got, want, where) {
  if (!got || typeof got !== 'object') return fail(where, `stored ${JSON.stringify(got)}`);
  fields.forEach((f) => {
    const g = got[f.name], w = want[f.name], at = `${where}.${f.name} (emulator)`;
    if (f.mode === 'REPEATED') {
      const wl = Array.isArray(w) ? w : [];
      const gl = g || [];
      if (gl.length !== wl.length) return fail(at, `${gl.length} values, not ${wl.length}`);
      wl.forEach((x, k) => sameStored(f, gl[k], x, `${at}[${k}]`));
    } else if (w === undefined) {
      if (g !== undefined && g !== null) fail(at, `${JSON.stringify(g)} where none was written`);
    } else {
      sameStored(f, g, w, at);
    }
  });
  for (const k of Object.keys(got))
    if (!fields.some((f) => f.name === k)) fail(where, `stored column ${k} the table has not`);
}

const plain = (fields) => fields.every((f) => IDENT.test(f.name) && (!f.fields || plain(f.fields)));
let emu = null, emuRows = 0;
if (process.argv[4]) {
  try {
    const { BigQueryWrite } = require(`${process.argv[4]}/lib/bigquery_write`);
    const r = BigQueryWrite.load(null);
    emu = r.service || null;
  } catch (e) {
    emu = null;
  }
}

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
let nrows = 0;
cases.forEach((c, ci) => {
  const where = `case ${ci}`;
  try {
    const type = pb.Type.fromDescriptor(desc.DescriptorProto.decode(Buffer.from(c.descriptor,
                                                                                'base64')),
                                        'proto2');
    new pb.Root().add(type).resolveAll();
    shape(c.fields, type, where);
    const rows = ProtoRows.decode(Buffer.from(c.rows, 'base64')).serialized_rows;
    if (rows.length !== c.expect.length) fail(where, `${rows.length} rows`);
    rows.forEach((r, i) => {
      const o = type.toObject(type.decode(r), {longs: String, bytes: String});
      record(c.fields, type, o, c.expect[i], `${where} row ${i}`);
      nrows++;
    });
    // (the emulator takes only classic column names: tables with flexible ones are not for it)
    if (emu && plain(c.fields)) {
      emuRows += rows.length;
      const out = emu.decodeStandalone(c.fields, Buffer.from(c.descriptor, 'base64'), rows);
      if (out.schemaError) return fail(where, `emulator: ${out.schemaError}`);
      out.rows.forEach((r, i) => {
        if (r.error) return fail(`${where} row ${i}`, `emulator: ${r.error}`);
        stored(c.fields, r.stored, c.expect[i], `${where} row ${i}`);
      });
    }
  } catch (e) {
    fail(where, e.stack);
  }
});
const viaEmu = emu ? ` (${emuRows} through the emulator's decoder too)` : '';
console.log(`${cases.length} schemas, ${nrows} rows${viaEmu}: ${failures} differences`);
process.exit(failures ? 1 : 0);
