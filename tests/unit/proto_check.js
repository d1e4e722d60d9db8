// proto_check.js - the differential half of test_proto_row.c: decodes the writer schemas and rows
// bepipe-lua's encoder wrote with protobufjs (the library Google's Node client and the emulator
// decode with), and compares every value with what the generator meant. Exit 0: all agree;
// 1: a difference (printed); 77: protobufjs is not installed (the test skips).
//   node proto_check.js CASES.json [DIR_WITH_NODE_MODULES]
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
    const rule = f.mode === 'REPEATED' ? 'repeated' : f.mode === 'REQUIRED' ? 'required' : undefined;
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
  } catch (e) {
    fail(where, e.stack);
  }
});
console.log(`${cases.length} schemas, ${nrows} rows: ${failures} differences`);
process.exit(failures ? 1 : 0);
