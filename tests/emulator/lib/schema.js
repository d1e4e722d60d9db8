'use strict';
// BigQuery schemas: normalising table schemas, validating insertAll rows the way the service
// does (with the coercions it accepts), and formatting stored rows for tabledata.list.
//
// Stored row form (one JSON object per line in DIR/bigquery/P/D/T.ndjson): INTEGER as a
// decimal string (int64 exact), FLOAT as a number (or "NaN"/"Infinity"/"-Infinity"),
// BOOLEAN as true/false, TIMESTAMP as "YYYY-MM-DDTHH:MM:SS.ffffffZ", JSON as its text,
// RECORD as an object, REPEATED as an array; NULL fields are left out.

const { bad } = require('./errors');

const TYPE_ALIASES = {
  INT64: 'INTEGER', INTEGER: 'INTEGER', FLOAT64: 'FLOAT', FLOAT: 'FLOAT', BOOL: 'BOOLEAN',
  BOOLEAN: 'BOOLEAN', STRUCT: 'RECORD', RECORD: 'RECORD', STRING: 'STRING', BYTES: 'BYTES',
  NUMERIC: 'NUMERIC', DECIMAL: 'NUMERIC', BIGNUMERIC: 'BIGNUMERIC', BIGDECIMAL: 'BIGNUMERIC',
  TIMESTAMP: 'TIMESTAMP', DATE: 'DATE', TIME: 'TIME', DATETIME: 'DATETIME',
  GEOGRAPHY: 'GEOGRAPHY', JSON: 'JSON', RANGE: 'RANGE', INTERVAL: 'INTERVAL',
};
const FIELD_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,299}$/;

// Validates and normalises schema.fields from tables.insert; the reply uses the legacy
// type names (INTEGER, FLOAT, BOOLEAN, RECORD) as tables.get does.
function normalizeFields(fields, prefix = '') {
  if (!Array.isArray(fields)) throw bad('Invalid schema: fields must be an array.');
  const seen = new Set();
  return fields.map((f) => {
    if (!f || typeof f !== 'object') throw bad('Invalid schema field.');
    const name = f.name;
    if (typeof name !== 'string' || !FIELD_NAME_RE.test(name))
      throw bad(`Invalid field name "${name}". Fields must contain only letters, numbers, and underscores, start with a letter or underscore, and be at most 300 characters long.`);
    const lname = name.toLowerCase();
    if (seen.has(lname)) throw bad(`Field ${prefix}${name} already exists in schema`);
    seen.add(lname);
    const type = TYPE_ALIASES[String(f.type || '').toUpperCase()];
    if (!type) throw bad(`Invalid value for type: ${f.type} is not a valid value`);
    const mode = f.mode === undefined || f.mode === null ? 'NULLABLE' : String(f.mode).toUpperCase();
    if (!['NULLABLE', 'REQUIRED', 'REPEATED'].includes(mode)) throw bad(`Invalid value for mode: ${f.mode} is not a valid value`);
    const out = { name, type, mode };
    if (type === 'RECORD') {
      if (!Array.isArray(f.fields) || f.fields.length === 0)
        throw bad(`Field ${prefix}${name} is type RECORD but has no schema`);
      out.fields = normalizeFields(f.fields, `${prefix}${name}.`);
    } else if (f.fields && f.fields.length) {
      throw bad(`Field ${prefix}${name} is type ${type} and cannot have a schema`);
    }
    for (const k of ['description', 'maxLength', 'precision', 'scale', 'defaultValueExpression', 'policyTags', 'collation', 'rangeElementType']) {
      if (f[k] !== undefined) out[k] = f[k];
    }
    return out;
  });
}

// Checks that `next` (normalised fields) is a change of `prev` tables.patch/update accept, as
// the service does: every old field is kept with its type (RECORDs recursively), a mode may only
// be relaxed REQUIRED -> NULLABLE, and a new field is NULLABLE or REPEATED. Throws a 400 with the
// service's message, prefixed by `what` ("Provided Schema does not match Table P:D.T. ").
function evolveFields(prev, next, what, prefix = '') {
  const byName = new Map(next.map((f) => [f.name.toLowerCase(), f]));
  const old = new Set(prev.map((f) => f.name.toLowerCase()));
  for (const f of prev) {
    const path = prefix + f.name;
    const n = byName.get(f.name.toLowerCase());
    if (!n) throw bad(`${what}Field ${path} is missing in new schema`);
    if (n.type !== f.type) throw bad(`${what}Field ${path} has changed type from ${f.type} to ${n.type}`);
    if (n.mode !== f.mode && !(f.mode === 'REQUIRED' && n.mode === 'NULLABLE'))
      throw bad(`${what}Field ${path} has changed mode from ${f.mode} to ${n.mode}`);
    if (f.type === 'RECORD') evolveFields(f.fields, n.fields, what, path + '.');
  }
  for (const n of next) {
    if (!old.has(n.name.toLowerCase()) && n.mode === 'REQUIRED')
      throw bad(`${what}Cannot add required fields to an existing schema. (field: ${prefix}${n.name})`);
  }
}

// ---- timestamps --------------------------------------------------------------------------
const TS_RE = /^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:(?:[Tt]|\s+)(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{0,6}))?)?)?\s*(?:(Z|z|UTC)|([+-])(\d{1,2})(?::?(\d{2}))?)?\s*$/;
const MIN_SEC = -62135596800; // 0001-01-01T00:00:00Z
const MAX_SEC = 253402300799; // 9999-12-31T23:59:59Z

function daysInMonth(y, m) {
  return [31, (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
}

function civilToSec(y, mo, d, h, mi, s) {
  const dt = new Date(0);
  dt.setUTCFullYear(y, mo - 1, d); // not Date.UTC: it maps years 0..99 to 1900..1999
  dt.setUTCHours(h, mi, s, 0);
  return Math.floor(dt.getTime() / 1000);
}

// Returns [sec, micro] or null. Accepts the string forms BigQuery documents and JSON numbers
// of seconds since the epoch (a milliseconds value lands out of range, as on the service).
function parseTimestamp(v) {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < MIN_SEC || v >= MAX_SEC + 1) return null;
    let sec = Math.floor(v);
    let micro = Math.round((v - sec) * 1e6);
    if (micro === 1000000) { sec++; micro = 0; }
    return [sec, micro];
  }
  if (typeof v !== 'string') return null;
  const m = TS_RE.exec(v);
  if (!m) return null;
  const y = +m[1]; const mo = +m[2]; const d = +m[3];
  const h = m[4] ? +m[4] : 0; const mi = m[5] ? +m[5] : 0; const s = m[6] ? +m[6] : 0;
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 59) return null;
  const micro = m[7] ? Number(m[7].padEnd(6, '0')) : 0;
  let sec = civilToSec(y, mo, d, h, mi, s);
  if (m[9]) {
    const oh = +m[10]; const om = m[11] ? +m[11] : 0;
    if (oh > 14 || om > 59) return null;
    sec -= (m[9] === '-' ? -1 : 1) * (oh * 3600 + om * 60);
  }
  if (sec < MIN_SEC || sec > MAX_SEC) return null;
  return [sec, micro];
}

// Fast path for the common RFC 3339 UTC form (what JS Date.toJSON and most clients send):
// avoids the general regex and Date objects, which dominate insertAll validation time.
const FAST_RE = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?Z$/;
// Returns the stored form ("…T…:…:….ffffffZ") or null when the general parser must decide.
function fastIso(v) {
  if (v.length < 20 || v.length > 27) return null;
  const m = FAST_RE.exec(v);
  if (!m) return null;
  const y = +m[1]; const mo = +m[2]; const d = +m[3];
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || +m[4] > 23 || +m[5] > 59 || +m[6] > 59) return null;
  if (v.length === 27) return v;
  return v.slice(0, 19) + '.' + (m[7] || '').padEnd(6, '0') + 'Z';
}

function tsToIso(sec, micro) {
  return new Date(sec * 1000).toISOString().slice(0, 19) + '.' + String(micro).padStart(6, '0') + 'Z';
}

function isoToTs(iso) {
  const sec = Math.floor(Date.parse(iso.slice(0, 19) + 'Z') / 1000);
  return [sec, Number(iso.slice(20, 26))];
}

// The legacy default output: float seconds the way Java's Double.toString prints them
// ("1.7145E9"), built from digits so microseconds are not lost to binary rounding.
function tsToFloatString(sec, micro) {
  let neg = false;
  if (sec < 0) { // represent as -(|value|)
    neg = true;
    if (micro) { sec = -sec - 1; micro = 1000000 - micro; } else sec = -sec;
  }
  const intDigits = String(sec);
  const frac = String(micro).padStart(6, '0').replace(/0+$/, '');
  let out;
  if (sec >= 1e7) {
    const digits = (intDigits + frac).replace(/0+$/, '') || '0';
    const exp = intDigits.length - 1;
    out = digits[0] + '.' + (digits.slice(1) || '0') + 'E' + exp;
  } else if (sec === 0 && micro === 0) {
    out = '0.0';
  } else if (sec === 0 && micro < 1000) {
    const v = micro / 1e6; // below 1e-3 Java switches to exponent form
    const e = Math.floor(Math.log10(v));
    const mant = String(micro).replace(/0+$/, '');
    out = mant[0] + '.' + (mant.slice(1) || '0') + 'E' + e;
  } else {
    out = intDigits + '.' + (frac || '0');
  }
  return neg ? '-' + out : out;
}

// ---- row validation ----------------------------------------------------------------------
const INT_RE = /^\s*[+-]?\d+\s*$/;
const FLOAT_RE = /^\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|NaN|Infinity|inf)\s*$/i;
const NUMERIC_RE = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const DATE_RE = /^(\d{4})-(\d{1,2})-(\d{1,2})$/;
const TIME_RE = /^(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6}))?)?$/;
const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;
const FAIL = Symbol('fail');

function validDate(s) {
  const m = DATE_RE.exec(s);
  if (!m) return false;
  const y = +m[1]; const mo = +m[2]; const d = +m[3];
  return y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth(y, mo);
}
function validTime(s) {
  const m = TIME_RE.exec(s);
  return !!m && +m[1] <= 23 && +m[2] <= 59 && (!m[3] || +m[3] <= 59);
}

// A request value as the error messages quote it: an integer past 2^53 (a BigInt from
// json_exact.parse) as its digits.
const show = (v) => (typeof v === 'bigint' ? v.toString() : JSON.stringify(v));

// Each converter returns the stored value or FAIL after setting ctx.msg. An integer past 2^53
// is a BigInt (json_exact.parse): INTEGER keeps its digits, the other types take it as the
// number it is.
function scalarConverter(type) {
  switch (type) {
    case 'STRING': case 'GEOGRAPHY':
      return (v, ctx) => {
        if (typeof v === 'string') return v;
        // The legacy streaming API turns JSON scalars into their text for STRING columns.
        if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
        ctx.msg = 'This field is not a string.'; return FAIL;
      };
    case 'INTEGER':
      return (v, ctx) => {
        if (typeof v === 'number') {
          if (Number.isSafeInteger(v)) return String(v);
          // a whole double past 2^53 (1e18, 2^63) stands for its exact value, if in range
          if (Number.isInteger(v) && BigInt(v) <= INT64_MAX && BigInt(v) >= INT64_MIN) return BigInt(v).toString();
        } else if (typeof v === 'bigint') {
          if (v <= INT64_MAX && v >= INT64_MIN) return v.toString();
        } else if (typeof v === 'string' && INT_RE.test(v)) {
          const b = BigInt(v.trim());
          if (b <= INT64_MAX && b >= INT64_MIN) return b.toString();
        }
        ctx.msg = `Cannot convert value to integer (bad value): ${show(v)}`; return FAIL;
      };
    case 'FLOAT':
      return (v, ctx) => {
        if (typeof v === 'number') return v;
        if (typeof v === 'bigint') return Number(v);
        if (typeof v === 'string' && FLOAT_RE.test(v)) {
          const t = v.trim().toLowerCase().replace(/^\+/, '');
          if (t === 'nan') return 'NaN';
          if (t === 'infinity' || t === 'inf') return 'Infinity';
          if (t === '-infinity' || t === '-inf') return '-Infinity';
          return Number(v);
        }
        ctx.msg = `Cannot convert value to floating point (bad value): ${show(v)}`; return FAIL;
      };
    case 'NUMERIC': case 'BIGNUMERIC':
      return (v, ctx) => {
        if (typeof v === 'number' && Number.isFinite(v)) return String(v);
        if (typeof v === 'bigint') return v.toString();
        if (typeof v === 'string' && NUMERIC_RE.test(v)) return v.trim();
        ctx.msg = `Cannot convert value to numeric (bad value): ${show(v)}`; return FAIL;
      };
    case 'BOOLEAN':
      return (v, ctx) => {
        if (typeof v === 'boolean') return v;
        if (typeof v === 'string') {
          const t = v.toLowerCase();
          if (t === 'true') return true;
          if (t === 'false') return false;
        }
        ctx.msg = `Cannot convert value to boolean (bad value): ${show(v)}`; return FAIL;
      };
    case 'TIMESTAMP':
      return (v, ctx) => {
        if (typeof v === 'string') {
          const f = fastIso(v);
          if (f) return f;
        }
        const t = parseTimestamp(typeof v === 'bigint' ? Number(v) : v);
        if (t) return tsToIso(t[0], t[1]);
        ctx.msg = typeof v === 'number' || typeof v === 'bigint'
          ? `Timestamp field value is out of range: ${v}`
          : `Could not parse ${show(v)} as a timestamp. Required format is YYYY-MM-DD HH:MM[:SS[.SSSSSS]] or YYYY/MM/DD HH:MM[:SS[.SSSSSS]]`;
        return FAIL;
      };
    case 'DATE':
      return (v, ctx) => {
        if (typeof v === 'string' && validDate(v)) return v;
        ctx.msg = `Could not parse ${show(v)} as a date. Required format is YYYY-MM-DD`; return FAIL;
      };
    case 'TIME':
      return (v, ctx) => {
        if (typeof v === 'string' && validTime(v)) return v;
        ctx.msg = `Could not parse ${show(v)} as a time. Required format is HH:MM[:SS[.SSSSSS]]`; return FAIL;
      };
    case 'DATETIME':
      return (v, ctx) => {
        if (typeof v === 'string') {
          const m = /^(\S+)(?:[Tt ]|\s+)(\S+)$/.exec(v.trim());
          if ((m && validDate(m[1]) && validTime(m[2])) || validDate(v)) return v;
        }
        ctx.msg = `Could not parse ${show(v)} as a datetime. Required format is YYYY-MM-DD[ HH:MM[:SS[.SSSSSS]]]`; return FAIL;
      };
    case 'BYTES':
      return (v, ctx) => {
        if (typeof v === 'string' && B64_RE.test(v) && v.length % 4 !== 1) return v;
        ctx.msg = 'Could not decode base64 string to bytes.'; return FAIL;
      };
    case 'JSON':
      // The legacy streaming API takes a JSON column as a string holding JSON text.
      return (v, ctx) => {
        if (typeof v === 'string') {
          try { JSON.parse(v); return v; } catch (e) { /* fall through */ }
          ctx.msg = `Could not parse ${JSON.stringify(v.slice(0, 100))} as JSON`; return FAIL;
        }
        ctx.msg = 'This field: JSON value must be a string of JSON text.'; return FAIL;
      };
    default:
      return (v) => (typeof v === 'bigint' ? v.toString() : v); // RANGE, INTERVAL: stored as given
  }
}

// Compiles a fields list into a function (obj, ctx, prefix) → stored object or FAIL.
function compileRecord(fields) {
  const byName = new Map();
  const byLower = new Map();
  const required = [];
  for (const f of fields) {
    const conv = f.type === 'RECORD' ? compileRecord(f.fields) : scalarConverter(f.type);
    const c = { name: f.name, rec: f.type === 'RECORD', conv, repeated: f.mode === 'REPEATED', required: f.mode === 'REQUIRED' };
    byName.set(f.name, c);
    byLower.set(f.name.toLowerCase(), c); // column names are case-insensitive
    if (c.required) required.push(c);
  }
  const fail = (ctx, loc, msg) => { ctx.loc = loc; ctx.msg = msg; return FAIL; };
  const convOne = (c, v, ctx, loc) => {
    if (c.rec) {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(ctx, loc, `This field: ${loc} is not a record.`);
      return c.conv(v, ctx, loc + '.');
    }
    if (typeof v === 'object') return fail(ctx, loc, `This field: ${loc} is not a scalar value; a record or array was given.`);
    const r = c.conv(v, ctx);
    if (r === FAIL) ctx.loc = loc;
    return r;
  };
  return function record(obj, ctx, prefix) {
    const out = {};
    for (const key in obj) {
      const c = byName.get(key) || byLower.get(key.toLowerCase());
      const loc = prefix + key;
      if (!c) {
        if (ctx.ignoreUnknown) continue;
        return fail(ctx, loc, `no such field: ${loc}.`);
      }
      const v = obj[key];
      if (v === null || v === undefined) {
        if (c.required) return fail(ctx, loc, `Missing required field: ${loc}.`);
        continue; // NULL (and an empty REPEATED) is stored as absent
      }
      if (c.repeated) {
        if (!Array.isArray(v)) return fail(ctx, loc, `Value specified for repeated field ${loc} is not an array.`);
        const arr = new Array(v.length);
        for (let i = 0; i < v.length; i++) {
          if (v[i] === null || v[i] === undefined) return fail(ctx, loc, `Only optional fields can be set to NULL. Field: ${loc}; Value: NULL`);
          const r = convOne(c, v[i], ctx, loc);
          if (r === FAIL) return FAIL;
          arr[i] = r;
        }
        if (arr.length) out[c.name] = arr;
      } else {
        if (Array.isArray(v)) return fail(ctx, loc, `Array specified for non-repeated field: ${loc}.`);
        const r = convOne(c, v, ctx, loc);
        if (r === FAIL) return FAIL;
        out[c.name] = r;
      }
    }
    for (const c of required) {
      if (out[c.name] === undefined) return fail(ctx, prefix + c.name, `Missing required field: ${prefix}${c.name}.`);
    }
    return out;
  };
}

// ---- tabledata.list formatting -----------------------------------------------------------
// fmt: 'FLOAT64' | 'INT64' | 'ISO8601_STRING'
function cellValue(f, v, fmt) {
  if (f.type === 'RECORD') return { f: f.fields.map((sf) => cell(sf, v[sf.name], fmt)) };
  switch (f.type) {
    case 'TIMESTAMP': {
      const [sec, micro] = isoToTs(v);
      if (fmt === 'INT64') return (BigInt(sec) * 1000000n + BigInt(micro)).toString();
      if (fmt === 'ISO8601_STRING') return v;
      return tsToFloatString(sec, micro);
    }
    case 'BOOLEAN': return v ? 'true' : 'false';
    default: return typeof v === 'string' ? v : String(v);
  }
}
function cell(f, v, fmt) {
  if (f.mode === 'REPEATED') return { v: (v || []).map((x) => ({ v: cellValue(f, x, fmt) })) };
  if (v === undefined || v === null) return { v: null };
  return { v: cellValue(f, v, fmt) };
}
function formatRow(fields, row, fmt) {
  return { f: fields.map((f) => cell(f, row[f.name], fmt)) };
}

module.exports = {
  evolveFields,
  normalizeFields, compileRecord, formatRow, parseTimestamp, tsToIso, tsToFloatString, FAIL, TYPE_ALIASES,
};
