'use strict';
// Fault injection rules and per-endpoint call counters, driven through /_emulator/faults.
//
// A rule matches requests by method, path (regex or glob) and/or op name (e.g.
// "bigquery.tabledata.insertAll", globs allowed), lets `skip` matches through, then applies
// to the next `count` matches (-1 = forever). What it does, in order:
//   latencyMs        delay before handling
//   stall            hold the request without answering: seconds, or true for forever
//   reset            "before": destroy the connection without handling the request;
//                    "after": handle it (side effects happen) then destroy instead of replying
//   status           answer this HTTP status with the API's error envelope (message, reason,
//                    grpcStatus override the defaults)
//   body             answer with this raw text instead of handling the request (no side
//                    effects): HTTP `status` (default 200), Content-Type application/json unless
//                    `headers` say otherwise; for hostile or malformed replies
//   ackIdResult      acknowledge / modifyAckDeadline on a subscription with exactly-once
//                    delivery: the first `ackIdCount` ids of the request (default all) fail
//                    with this ErrorInfo value (e.g. "TRANSIENT_FAILURE_UNORDERED_ACK_ID")
//   rejectRows       insertAll and AppendRows: mark rows invalid, by {indexes:[...]} and/or
//                    {field:"a.b", equals:value}; other rows behave as usual. AppendRows only:
//                    with: "result" answers row_errors beside an (empty) append_result, "none"
//                    row_errors alone, without the usual error (a server's odd reply; nothing
//                    is written either way)
// For the gRPC Storage Write API (ops "bigquerystorage.<Method>", path
// "/google.cloud.bigquery.storage.v1.BigQueryWrite/<Method>"; a unary call matches once, an
// AppendRows connection once per request message), in the same order:
//   latencyMs, stall as above (stall: the append or call is never answered)
//   reset            "before"/true: RST_STREAM without handling; "after": handle it (rows are
//                    written) then RST_STREAM instead of the reply
//   goaway           "before"/true: GOAWAY on the connection and the call ends UNAVAILABLE
//                    unhandled; "after": handle and answer, then GOAWAY + UNAVAILABLE
//   disconnect       like reset, but closes the whole TCP connection (every stream on it), no GOAWAY
//   httpStatus       answer this HTTP :status with a text body, no gRPC status (a proxy error)
//   noStatus         end the reply without grpc-status (clients must treat it as an error)
//   grpcCode         end the call with this status (number or name, e.g. "UNAVAILABLE"; an HTTP
//                    `status` is mapped, 503 -> UNAVAILABLE); Trailers-Only when nothing was sent
//                    yet; `message` sets grpc-message. With inband: true (AppendRows) the append
//                    gets AppendRowsResponse.error with this code instead and the stream stays open;
//                    with after: true the request is handled first (rows written), then the call
//                    ends with the code instead of the reply (a write the client cannot know of)
//   updatedSchema    AppendRows: handle the request as usual (rows written) and send this
//                    TableSchema (protobufjs JSON, enum numbers allowed: {"fields":[{"name":"x",
//                    "type":77}]} for a type the client may not know) as the reply's updated_schema

let nextId = 1;

function globToRegex(g) {
  return new RegExp('^' + g.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\?/g, '.').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '.*') + '$');
}
function opMatcher(op) {
  return new RegExp('^' + op.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$');
}

// JSON.stringify's replacer for a BigInt: its digits, as a string.
const bigText = (k, v) => (typeof v === 'bigint' ? v.toString() : v);

function getPath(obj, dotted) {
  let v = obj;
  for (const k of dotted.split('.')) { if (v === null || typeof v !== 'object') return undefined; v = v[k]; }
  return v;
}

class Faults {
  constructor() {
    this.rules = [];
    this.counters = new Map(); // op -> {calls, statuses: {code: n}}
    this.bytes = new Map(); // op -> {requests, bytes}: request bytes received (GET /_emulator/bytes)
  }

  // Validates a rule spec; returns the stored rule (with id) or throws Error.
  add(spec) {
    if (!spec || typeof spec !== 'object') throw new Error('fault rule must be a JSON object');
    const r = Object.assign({}, spec, { id: nextId++, hits: 0, applied: 0 });
    r.count = spec.count === undefined ? 1 : Number(spec.count);
    r.skip = Number(spec.skip || 0);
    if (!Number.isInteger(r.count) || r.count === 0 || r.count < -1) throw new Error('count must be a positive integer or -1 (forever)');
    if (spec.method) r.method = String(spec.method).toUpperCase();
    if (spec.path) r.pathRe = new RegExp(spec.path);
    if (spec.glob) r.pathRe = globToRegex(spec.glob);
    if (spec.op) r.opRe = opMatcher(String(spec.op));
    if (spec.status !== undefined && !(Number.isInteger(spec.status) && spec.status >= 100 && spec.status <= 599)) throw new Error('status must be an HTTP status code');
    if (spec.reset !== undefined && ![true, 'before', 'after'].includes(spec.reset)) throw new Error('reset must be true, "before" or "after"');
    if (spec.rejectRows !== undefined) {
      const rr = spec.rejectRows;
      if (!rr || typeof rr !== 'object' || (!Array.isArray(rr.indexes) && !rr.field && !rr.all)) throw new Error('rejectRows needs indexes, field/equals or all');
    }
    if (spec.body !== undefined && typeof spec.body !== 'string') throw new Error('body must be a string');
    if (spec.headers !== undefined && (typeof spec.headers !== 'object' || spec.headers === null)) throw new Error('headers must be an object');
    if (spec.ackIdResult !== undefined && typeof spec.ackIdResult !== 'string') throw new Error('ackIdResult must be a string');
    if (spec.goaway !== undefined && ![true, 'before', 'after'].includes(spec.goaway)) throw new Error('goaway must be true, "before" or "after"');
    if (spec.disconnect !== undefined && ![true, 'before', 'after'].includes(spec.disconnect)) throw new Error('disconnect must be true, "before" or "after"');
    if (spec.grpcCode !== undefined && !((Number.isInteger(spec.grpcCode) && spec.grpcCode >= 0 && spec.grpcCode <= 16) || typeof spec.grpcCode === 'string')) throw new Error('grpcCode must be 0..16 or a status name');
    if (spec.updatedSchema !== undefined && (!spec.updatedSchema || typeof spec.updatedSchema !== 'object' || !Array.isArray(spec.updatedSchema.fields))) throw new Error('updatedSchema must be a TableSchema object with fields');
    if (spec.httpStatus !== undefined && !(Number.isInteger(spec.httpStatus) && spec.httpStatus >= 100 && spec.httpStatus <= 599)) throw new Error('httpStatus must be an HTTP status code');
    if (!r.status && !r.reset && !r.stall && !r.latencyMs && !r.rejectRows && r.body === undefined && !r.ackIdResult &&
        r.grpcCode === undefined && !r.goaway && !r.disconnect && !r.httpStatus && !r.noStatus && !r.updatedSchema)
      throw new Error('rule does nothing: give status, body, reset, stall, latencyMs, rejectRows, ackIdResult, grpcCode, goaway, disconnect, httpStatus, noStatus or updatedSchema');
    this.rules.push(r);
    return this.describe(r);
  }
  describe(r) {
    const o = Object.assign({}, r);
    delete o.pathRe; delete o.opRe;
    return o;
  }
  list() { return this.rules.map((r) => this.describe(r)); }
  remove(id) { const n = this.rules.length; this.rules = this.rules.filter((r) => r.id !== id); return n !== this.rules.length; }
  clear() { this.rules = []; }

  matches(r, method, path, op) {
    if (r.method && r.method !== '*' && r.method !== method) return false;
    if (r.pathRe && !r.pathRe.test(path)) return false;
    if (r.opRe && !r.opRe.test(op || '')) return false;
    return true;
  }
  // Counts one match against a rule; true when the rule fires on this request.
  consume(r) {
    r.hits++;
    if (r.hits <= r.skip) return false;
    r.applied++;
    if (r.count !== -1 && r.applied >= r.count) this.rules = this.rules.filter((x) => x !== r);
    return true;
  }

  // The first request-level rule (not a rejectRows one) that fires for this request. `grpc`:
  // the request is a gRPC call; rules with effects only the other side has (body/ackIdResult
  // for REST, grpcCode/goaway/disconnect/httpStatus/noStatus/inband/after/updatedSchema for gRPC) are left
  // to requests of that side, so a rule without op or path is not used up by the wrong one.
  match(method, path, op, grpc = false) {
    for (const r of this.rules) {
      if (r.rejectRows && !r.status && !r.reset && !r.stall && !r.latencyMs && r.body === undefined) continue;
      const grpcOnly = r.grpcCode !== undefined || r.goaway || r.disconnect || r.httpStatus || r.noStatus || r.inband || r.after
        || r.updatedSchema;
      const restOnly = r.body !== undefined || r.ackIdResult;
      if (grpc ? restOnly : grpcOnly) continue;
      if (this.matches(r, method, path, op) && this.consume(r)) return r;
    }
    return null;
  }

  // For insertAll: returns fn(index, json) → error item or null, or null when no rule fires.
  rowRejector(c) {
    for (const r of this.rules) {
      if (!r.rejectRows || !this.matches(r, c.method, c.path, c.op) || !this.consume(r)) continue;
      const rr = r.rejectRows;
      const idx = new Set(rr.indexes || []);
      const item = { reason: rr.reason || 'invalid', location: rr.field || '', debugInfo: '', message: rr.message || 'Row rejected by emulator fault injection.' };
      if (rr.with) item.with = rr.with;
      return (i, json) => {
        if (rr.all || idx.has(i)) return item;
        // an integer past 2^53 in a row is a BigInt (json_exact.js), which JSON.stringify refuses
        if (rr.field && JSON.stringify(getPath(json, rr.field), bigText) === JSON.stringify(rr.equals)) return item;
        return null;
      };
    }
    return null;
  }

  record(op, status) {
    let k = this.counters.get(op);
    if (!k) { k = { calls: 0, statuses: {} }; this.counters.set(op, k); }
    k.calls++;
    k.statuses[status] = (k.statuses[status] || 0) + 1;
  }
  countersJson() {
    const out = {};
    for (const [op, k] of [...this.counters].sort()) out[op] = k;
    return out;
  }
  // Adds one request of n bytes (request line, headers and body as received, before any gunzip)
  // to op's tally; kept apart from the counters so their shape stays what tests compare.
  recordBytes(op, n) {
    let k = this.bytes.get(op);
    if (!k) { k = { requests: 0, bytes: 0 }; this.bytes.set(op, k); }
    k.requests++;
    k.bytes += n;
  }
  bytesJson() {
    const out = {};
    for (const [op, k] of [...this.bytes].sort()) out[op] = k;
    return out;
  }
  resetCounters() { this.counters.clear(); this.bytes.clear(); }
}

module.exports = { Faults };
