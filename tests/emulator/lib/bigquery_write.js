'use strict';
// BigQuery Storage Write API: google.cloud.bigquery.storage.v1.BigQueryWrite over gRPC (h2c)
// on a port of its own: CreateWriteStream, AppendRows (bidi stream), GetWriteStream,
// FinalizeWriteStream, BatchCommitWriteStreams, FlushRows.
//
// The gRPC layer is written on node:http2 rather than @grpc/grpc-js's server so that the fault
// rules can do on the wire what a C transport has to survive: RST_STREAM, GOAWAY, a
// Trailers-Only reply, a reply without grpc-status, a stalled stream, a non-200 :status.
// protobufjs decodes the messages (the .proto definitions come from the
// @google-cloud/bigquery-storage npm package) and builds, from each request's writer schema
// (a DescriptorProto), the type its rows are decoded with. Both are test-only npm packages:
// BigQueryWrite.load() returns a reason instead of a service when they are absent, so the
// emulator still runs under plain node (`make demo`).
//
// Rows are checked against the table as insertAll checks them (schema.js via the table's
// validator) and land in the same table file, so tabledata.list and `bq head` see them.
// Stream state (type, row count, finalized, committed, uncommitted rows) is kept in memory and
// saved to DIR/bigquerystorage/streams.json when the emulator stops (SIGTERM/SIGINT), so a
// restart keeps offsets and row counts; after a kill -9 created streams are gone (NOT_FOUND).

const http2 = require('http2');
const path = require('path');
const crypto = require('crypto');
const zlib = require('zlib');
const schema = require('./schema');
const store = require('./store');

const V1 = 'google.cloud.bigquery.storage.v1';
const SERVICE = `/${V1}.BigQueryWrite/`;
const MAX_MESSAGE = 20 * 1024 * 1024;   // larger frames are refused as grpc servers do
const MAX_REQUEST = 10 * 1024 * 1024;   // the service's AppendRows request limit
const TABLE_RE = /^projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)$/;
const STREAM_RE = /^(projects\/[^/]+\/datasets\/[^/]+\/tables\/[^/]+)\/streams\/([^/]+)$/;

// gRPC status codes (grpc/doc/statuscodes.md).
const CODE = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
};
const CODE_NAME = Object.fromEntries(Object.entries(CODE).map(([k, v]) => [v, k]));
// HTTP statuses in fault rules written for the REST APIs, as gRPC codes.
const CODE_BY_HTTP = {
  400: CODE.INVALID_ARGUMENT, 401: CODE.UNAUTHENTICATED, 403: CODE.PERMISSION_DENIED,
  404: CODE.NOT_FOUND, 409: CODE.ABORTED, 412: CODE.FAILED_PRECONDITION, 429: CODE.RESOURCE_EXHAUSTED,
  499: CODE.CANCELLED, 500: CODE.INTERNAL, 501: CODE.UNIMPLEMENTED, 502: CODE.UNAVAILABLE,
  503: CODE.UNAVAILABLE, 504: CODE.DEADLINE_EXCEEDED,
};
// StorageError.StorageErrorCode
const SE = {
  TABLE_NOT_FOUND: 1, STREAM_ALREADY_COMMITTED: 2, STREAM_NOT_FOUND: 3, INVALID_STREAM_TYPE: 4,
  INVALID_STREAM_STATE: 5, STREAM_FINALIZED: 6, SCHEMA_MISMATCH_EXTRA_FIELDS: 7,
  OFFSET_ALREADY_EXISTS: 8, OFFSET_OUT_OF_RANGE: 9,
};
const STREAM_TYPE = { COMMITTED: 1, PENDING: 2, BUFFERED: 3 };
const STREAM_TYPE_NAME = { 1: 'COMMITTED', 2: 'PENDING', 3: 'BUFFERED' };
// TableFieldSchema.Type / .Mode for the storage form of a table schema.
const STORAGE_TYPE = {
  STRING: 1, INTEGER: 2, FLOAT: 3, RECORD: 4, BYTES: 5, BOOLEAN: 6, TIMESTAMP: 7, DATE: 8,
  TIME: 9, DATETIME: 10, GEOGRAPHY: 11, NUMERIC: 12, BIGNUMERIC: 13, INTERVAL: 14, JSON: 15, RANGE: 16,
};
const STORAGE_MODE = { NULLABLE: 1, REQUIRED: 2, REPEATED: 3 };
const DRAINING_MESSAGE = 'Closing the stream because server is restarted. This is expected and client is advised to reconnect.';

const INT_TYPES = new Set(['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64']);
// Proto field types each column accepts (the service's conversions, as far as writers use them).
function protoTypeFits(col, ptype, isMessage) {
  if (col.type === 'RECORD' || col.type === 'RANGE') return isMessage;
  if (isMessage) return false;
  switch (col.type) {
    case 'INTEGER': return INT_TYPES.has(ptype);
    case 'FLOAT': return ptype === 'double' || ptype === 'float' || INT_TYPES.has(ptype);
    case 'BOOLEAN': return ptype === 'bool' || INT_TYPES.has(ptype);
    case 'STRING': case 'JSON': case 'GEOGRAPHY': case 'INTERVAL': return ptype === 'string';
    case 'BYTES': return ptype === 'bytes' || ptype === 'string';
    case 'TIMESTAMP': return ptype === 'string' || INT_TYPES.has(ptype);
    case 'DATE': return ptype === 'string' || INT_TYPES.has(ptype);
    case 'NUMERIC': case 'BIGNUMERIC': return ptype === 'string' || INT_TYPES.has(ptype) || ptype === 'double';
    case 'DATETIME': case 'TIME': return ptype === 'string';
    default: return false;
  }
}

class GrpcError extends Error {
  // code: gRPC status; storage: optional {code, entity} for a StorageError detail.
  constructor(code, message, storage) { super(message); this.code = code; this.storage = storage; }
}
// A GrpcError whose message ends naming its entity, as the service's do, with a StorageError
// detail of code `se` when given.
function entityError(code, msg, entity, se) {
  return new GrpcError(code, `${msg} Entity: ${entity}`, se ? { code: se, entity } : undefined);
}

// Percent-encodes grpc-message as PROTOCOL-HTTP2.md asks (bytes outside 0x20..0x7E, and '%').
function encodeGrpcMessage(s) {
  let out = '';
  for (const b of Buffer.from(String(s), 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function timestampNow() {
  const ms = Date.now();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

const DAY_MS = 86400000;
function daysToDate(days) {
  const d = new Date(0);
  d.setTime(days * DAY_MS);
  const y = d.getUTCFullYear();
  if (y < 1 || y > 9999 || !Number.isFinite(d.getTime())) return null;
  return String(y).padStart(4, '0') + '-' + String(d.getUTCMonth() + 1).padStart(2, '0') + '-' + String(d.getUTCDate()).padStart(2, '0');
}
const MIN_MICROS = -62135596800000000n;
const MAX_MICROS = 253402300799999999n;
function microsToIso(v) {
  const us = BigInt(v);
  if (us < MIN_MICROS || us > MAX_MICROS) return null;
  let sec = us / 1000000n;
  let micro = us % 1000000n;
  if (micro < 0n) { micro += 1000000n; sec -= 1n; }
  return schema.tsToIso(Number(sec), Number(micro));
}

// One gRPC call on an HTTP/2 stream: reads length-prefixed messages, writes replies and the
// status (as trailers, or as a Trailers-Only reply while no header has gone out).
class Call {
  constructor(svc, stream, headers, method) {
    this.svc = svc;
    this.stream = stream;
    this.headers = headers;
    this.method = method;
    this.op = `bigquerystorage.${method}`;
    this.path = headers[':path'];
    this.sentHeaders = false;
    this.done = false;
    this.chunks = [];
    this.have = 0;
    this.onMessage = null;
    this.onEnd = null;
    this.timer = null;
    stream.on('error', () => { /* a client reset is an ordinary end here */ });
    stream.on('close', () => { this.done = true; if (this.timer) clearTimeout(this.timer); });
    const t = /^(\d{1,8})([HMSmun])$/.exec(headers['grpc-timeout'] || '');
    if (t) {
      const ms = Number(t[1]) * { H: 3600000, M: 60000, S: 1000, m: 1, u: 0.001, n: 0.000001 }[t[2]];
      this.timer = setTimeout(() => this.finish(CODE.DEADLINE_EXCEEDED, 'Deadline Exceeded'), Math.max(1, Math.ceil(ms)));
    }
  }
  closed() { return this.done || this.stream.destroyed || this.stream.closed; }
  start() {
    this.stream.on('data', (d) => this.onData(d));
    this.stream.on('end', () => { if (this.onEnd) this.onEnd(); });
  }
  // Chunks are kept in a list until a whole message is there: joining on every DATA frame
  // would copy a 10 MB append hundreds of times.
  onData(d) {
    this.chunks.push(d);
    this.have += d.length;
    while (this.have >= 5) {
      if (this.chunks[0].length < 5) this.join();
      const head = this.chunks[0];
      const flag = head[0];
      const len = head.readUInt32BE(1);
      if (len > MAX_MESSAGE) {
        this.chunks = []; this.have = 0;
        return this.finish(CODE.RESOURCE_EXHAUSTED, `Received message larger than max (${len} vs. ${MAX_MESSAGE})`);
      }
      if (this.have < 5 + len) return;
      if (head.length < 5 + len) this.join();
      const buf = this.chunks[0];
      let msg = buf.subarray(5, 5 + len);
      if (buf.length === 5 + len) this.chunks.shift(); else this.chunks[0] = buf.subarray(5 + len);
      this.have -= 5 + len;
      if (flag === 1) {
        const enc = this.headers['grpc-encoding'];
        try {
          // decompressed, a message has the same limit as on the wire (a small bomb stays small)
          if (enc === 'gzip') msg = zlib.gunzipSync(msg, { maxOutputLength: MAX_MESSAGE });
          else if (enc === 'deflate') msg = zlib.inflateSync(msg, { maxOutputLength: MAX_MESSAGE });
          else throw new Error(`compressed message without a supported grpc-encoding (${enc || 'none'})`);
        } catch (e) { return this.finish(CODE.INTERNAL, `Failed to decompress a message: ${e.message}`); }
      } else if (flag !== 0) {
        return this.finish(CODE.INTERNAL, `Invalid compressed-flag byte ${flag}`);
      }
      if (this.onMessage) this.onMessage(Buffer.from(msg));
      if (this.closed()) return;
    }
  }
  join() {
    const all = Buffer.concat(this.chunks, this.have);
    this.chunks = [all];
  }
  sendHeaders(extra) {
    if (this.sentHeaders || this.closed()) return;
    this.sentHeaders = true;
    const h = { ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity,deflate,gzip' };
    this.stream.respond(Object.assign(h, extra || {}), { waitForTrailers: true });
    this.stream.on('wantTrailers', () => { this.stream.sendTrailers(this.trailers || { 'grpc-status': '0' }); });
  }
  send(buf) {
    if (this.closed()) return;
    this.sendHeaders();
    const frame = Buffer.allocUnsafe(5 + buf.length);
    frame[0] = 0;
    frame.writeUInt32BE(buf.length, 1);
    buf.copy(frame, 5);
    this.stream.write(frame);
  }
  statusHeaders(code, message, detailsBin, extra) {
    const h = Object.assign({ 'grpc-status': String(code) }, extra || {});
    if (message) h['grpc-message'] = encodeGrpcMessage(message);
    if (detailsBin) h['grpc-status-details-bin'] = detailsBin.toString('base64').replace(/=+$/, '');
    return h;
  }
  // Ends the call with a status; the first one wins.
  finish(code, message, detailsBin, noStatus, extra) {
    if (this.closed()) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.svc.record(this.op, CODE_NAME[code] || String(code));
    if (noStatus) { // a reply whose trailers lack grpc-status: clients must call it an error
      if (!this.sentHeaders) this.stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { endStream: true });
      else { this.trailers = {}; this.stream.end(); }
      return;
    }
    const st = this.statusHeaders(code, message, detailsBin, extra);
    if (!this.sentHeaders) {
      this.sentHeaders = true;
      this.stream.respond(Object.assign({ ':status': 200, 'content-type': 'application/grpc' }, st), { endStream: true });
      return;
    }
    this.trailers = st;
    this.stream.end();
  }
  fail(err) {
    if (err instanceof GrpcError) {
      return this.finish(err.code, err.message, this.svc.statusDetails(err), false, this.svc.storageTrailer(err));
    }
    process.stderr.write(`emulator: internal error in ${this.method}: ${err && err.stack}\n`);
    return this.finish(CODE.INTERNAL, 'Internal error encountered.');
  }
  // Drops the stream without a status (RST_STREAM).
  reset() {
    if (this.closed()) return;
    this.done = true;
    this.svc.record(this.op, 'reset');
    this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
  // Closes the TCP connection under every stream on it, with no GOAWAY (a network failure).
  disconnect() {
    if (this.closed()) return;
    this.done = true;
    this.svc.record(this.op, 'disconnect');
    const s = this.stream.session;
    if (s && !s.destroyed) s.destroy();
    else this.stream.destroy();
  }
  // Sends GOAWAY on the connection, lets this stream end with UNAVAILABLE, then closes the
  // connection once its streams are done, as a server going away does.
  goaway() {
    const s = this.stream.session;
    if (s && !s.destroyed && !s.closed) {
      try { s.goaway(http2.constants.NGHTTP2_NO_ERROR, this.stream.id || 0); } catch (e) { /* already going */ }
    }
    this.finish(CODE.UNAVAILABLE, DRAINING_MESSAGE);
    if (s && !s.destroyed) setTimeout(() => { try { s.close(); } catch (e) { /* gone */ } }, 50).unref();
  }
}

class BigQueryWrite {
  // Returns {service} or {reason}: the npm packages are looked up in the conformance suite's
  // node_modules, then on node's usual paths.
  static load(app) {
    const dirs = [path.resolve(__dirname, '../conformance/node_modules'), path.resolve(__dirname, '..')];
    try {
      const find = (name) => require.resolve(name, { paths: dirs });
      const protobuf = require(find('protobufjs'));
      require(find('protobufjs/ext/descriptor'));
      const protos = require(find('@google-cloud/bigquery-storage/build/protos/protos.json'));
      return { service: new BigQueryWrite(app, protobuf, protos) };
    } catch (e) {
      return { reason: 'npm packages protobufjs and @google-cloud/bigquery-storage not found (npm ci in tests/emulator/conformance)' };
    }
  }

  constructor(app, protobuf, protos) {
    this.app = app;
    this.bq = app && app.bigquery;
    this.faults = app && app.faults;
    this.protobuf = protobuf;
    this.root = protobuf.Root.fromJSON(protos);
    const T = (n) => this.root.lookupType(n);
    this.t = {
      CreateWriteStreamRequest: T(`${V1}.CreateWriteStreamRequest`), WriteStream: T(`${V1}.WriteStream`),
      AppendRowsRequest: T(`${V1}.AppendRowsRequest`), AppendRowsResponse: T(`${V1}.AppendRowsResponse`),
      GetWriteStreamRequest: T(`${V1}.GetWriteStreamRequest`),
      FinalizeWriteStreamRequest: T(`${V1}.FinalizeWriteStreamRequest`),
      FinalizeWriteStreamResponse: T(`${V1}.FinalizeWriteStreamResponse`),
      BatchCommitWriteStreamsRequest: T(`${V1}.BatchCommitWriteStreamsRequest`),
      BatchCommitWriteStreamsResponse: T(`${V1}.BatchCommitWriteStreamsResponse`),
      FlushRowsRequest: T(`${V1}.FlushRowsRequest`), FlushRowsResponse: T(`${V1}.FlushRowsResponse`),
      StorageError: T(`${V1}.StorageError`), Status: T('google.rpc.Status'), DescriptorProto: T('google.protobuf.DescriptorProto'),
    };
    this.streams = new Map();   // stream name -> stream state (application-created streams)
    this.file = app && app.opts && app.opts.data ? path.join(app.opts.data, 'bigquerystorage', 'streams.json') : null;
    this.loadStreams();
    this.sessions = new Set();
    this.port = 0;
    this.unary = {
      CreateWriteStream: [this.t.CreateWriteStreamRequest, this.t.WriteStream, (r) => this.createWriteStream(r)],
      GetWriteStream: [this.t.GetWriteStreamRequest, this.t.WriteStream, (r) => this.getWriteStream(r)],
      FinalizeWriteStream: [this.t.FinalizeWriteStreamRequest, this.t.FinalizeWriteStreamResponse, (r) => this.finalizeWriteStream(r)],
      BatchCommitWriteStreams: [this.t.BatchCommitWriteStreamsRequest, this.t.BatchCommitWriteStreamsResponse, (r) => this.batchCommit(r)],
      FlushRows: [this.t.FlushRowsRequest, this.t.FlushRowsResponse, (r) => this.flushRows(r)],
    };
  }

  record(op, status) { this.faults.record(op, status); }

  // google.rpc.Status bytes for grpc-status-details-bin, with a StorageError when there is one.
  statusDetails(err) {
    const st = { code: err.code, message: err.message, details: [] };
    if (err.storage) {
      const se = this.t.StorageError.encode(this.t.StorageError.fromObject({
        code: err.storage.code, entity: err.storage.entity || '', errorMessage: err.message,
      })).finish();
      st.details.push({ type_url: `type.googleapis.com/${V1}.StorageError`, value: se });
    }
    return Buffer.from(this.t.Status.encode(this.t.Status.fromObject(st)).finish());
  }
  // The service also sends the StorageError as trailing metadata (the Node client's
  // parseStorageErrors reads it there).
  storageTrailer(err) {
    if (!err.storage) return {};
    const se = this.t.StorageError.encode(this.t.StorageError.fromObject({
      code: err.storage.code, entity: err.storage.entity || '', errorMessage: err.message })).finish();
    return { [`${V1}.storageerror-bin`]: Buffer.from(se).toString('base64').replace(/=+$/, '') };
  }
  statusObject(err) {
    const o = { code: err.code, message: err.message };
    if (err.storage) {
      o.details = [{ type_url: `type.googleapis.com/${V1}.StorageError`, value: this.t.StorageError.encode(this.t.StorageError.fromObject({
        code: err.storage.code, entity: err.storage.entity || '', errorMessage: err.message })).finish() }];
    }
    return o;
  }

  // ---- HTTP/2 front -------------------------------------------------------------------------
  listen(host, port, maxStreams) {
    // Windows as large as Google's front ends give, so a 10 MB append is not paced by
    // WINDOW_UPDATEs; session memory above node's 10 MB default for the same reason.
    const server = http2.createServer({ maxSessionMemory: 256, settings: { maxConcurrentStreams: maxStreams || 1000, initialWindowSize: 16 << 20 } });
    server.on('session', (s) => {
      s.once('connect', () => { try { s.setLocalWindowSize(64 << 20); } catch (e) { /* closed */ } });
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
      s.on('error', () => { /* a peer that goes away mid-frame */ });
    });
    server.on('stream', (stream, headers) => this.onStream(stream, headers));
    server.on('sessionError', () => { /* logged by the client side */ });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { this.port = server.address().port; resolve(this.port); });
    });
  }
  // Streams saved by a clean stop come back while their table is the same one (same creationTime).
  loadStreams() {
    if (!this.file || !this.bq) return;
    const saved = store.readJson(this.file, []);
    this.loaded = Array.isArray(saved) && saved.length > 0;
    for (const x of Array.isArray(saved) ? saved : []) {
      const m = STREAM_RE.exec(x.name || '');
      if (!m || m[2] === '_default') continue;
      let tb;
      try { tb = this.table(m[1]); } catch (e) { continue; }
      if (tb.r.creationTime !== x.tableCreated) continue;
      this.streams.set(x.name, Object.assign({}, x, { tb, pending: x.pending || [] }));
    }
  }
  saveStreams() {
    if (!this.file) return;
    const out = [];
    for (const s of this.streams.values()) {
      if (s.isDefault) continue;
      const o = Object.assign({}, s, { tableCreated: s.tb.r.creationTime });
      delete o.tb;
      out.push(o);
    }
    if (!out.length && !this.loaded) return; // nothing to keep, no file to update
    try { store.writeJson(this.file, out); } catch (e) { process.stderr.write(`emulator: cannot save write streams: ${e.message}\n`); }
  }
  close() {
    this.saveStreams();
    for (const s of this.sessions) { try { s.destroy(); } catch (e) { /* gone */ } }
    if (this.server) this.server.close();
  }

  onStream(stream, headers) {
    if (this.app.verbose) process.stderr.write(`grpc ${headers[':path']}\n`);
    const p = headers[':path'] || '';
    if (headers[':method'] !== 'POST' || !String(headers['content-type'] || '').startsWith('application/grpc')) {
      stream.on('error', () => {});
      stream.respond({ ':status': 415, 'content-type': 'text/plain' });
      stream.end('gRPC requests only (POST, content-type application/grpc)\n');
      return;
    }
    const method = p.startsWith(SERVICE) ? p.slice(SERVICE.length) : '';
    const call = new Call(this, stream, headers, method || 'unknown');
    if (method !== 'AppendRows' && !this.unary[method]) {
      return call.finish(CODE.UNIMPLEMENTED, `Method not found: ${p}`);
    }
    const why = this.app.auth.check({ headers: { authorization: headers.authorization } });
    if (why) return call.finish(CODE.UNAUTHENTICATED, why);
    // Google's clients send x-goog-request-params (write_stream=..., parent=..., name=...) for
    // routing; counted so tests can check a client sends it and names the right resource.
    const rp = headers['x-goog-request-params'];
    this.record(`${call.op}.routingHeader`, rp ? 'present' : 'missing');
    try { call.routing = rp ? decodeURIComponent(String(rp)) : null; } catch (e) { call.routing = String(rp); }
    if (method === 'AppendRows') return this.appendRowsCall(call);
    return this.unaryCall(call);
  }

  // Applies the fault rule matching this call (unary) or this message (AppendRows). Returns
  // 'handled' when the rule answered, dropped or stalled the call, else the rule (or null) for
  // the handler to apply itself (inband, after, reset/goaway "after", rejectRows).
  async applyRule(call, rule) {
    if (!rule) return null;
    if (rule.latencyMs) await sleep(rule.latencyMs);
    if (rule.stall) {
      if (rule.stall === true || rule.stall === 'forever') { call.stalled = true; this.record(call.op, 'stalled'); return 'handled'; }
      await sleep(Number(rule.stall) * 1000);
    }
    if (call.closed()) return 'handled';
    if (rule.reset === true || rule.reset === 'before') { call.reset(); return 'handled'; }
    if (rule.goaway === true || rule.goaway === 'before') { call.goaway(); return 'handled'; }
    if (rule.disconnect === true || rule.disconnect === 'before') { call.disconnect(); return 'handled'; }
    if (rule.httpStatus) {
      call.done = true;
      this.record(call.op, `http${rule.httpStatus}`);
      call.stream.respond({ ':status': rule.httpStatus, 'content-type': 'text/html' });
      call.stream.end(rule.body || `<html><body>Error ${rule.httpStatus}</body></html>`);
      return 'handled';
    }
    if (rule.noStatus) { call.finish(CODE.OK, '', null, true); return 'handled'; }
    const code = ruleCode(rule);
    if (code !== null && !rule.inband && !rule.after) {
      call.finish(code, rule.message || `Injected fault: ${CODE_NAME[code] || code}.`);
      return 'handled';
    }
    return rule;
  }

  unaryCall(call) {
    const [reqType, respType, fn] = this.unary[call.method];
    const chunks = [];
    call.onMessage = (m) => chunks.push(m);
    call.onEnd = () => { handle().catch((e) => call.fail(e)); };
    const handle = async () => {
      if (call.closed()) return;
      if (chunks.length !== 1) {
        return call.finish(CODE.INTERNAL, chunks.length ? 'Too many request messages for a unary call' : 'No request message received');
      }
      let req;
      try { req = reqType.decode(chunks[0]); } catch (e) { return call.finish(CODE.INTERNAL, `Failed to parse the request: ${e.message}`); }
      const rule = this.faults.match('POST', call.path, call.op, true);
      const r = await this.applyRule(call, rule);
      if (r === 'handled') return;
      try {
        const out = await fn(req);
        if (rule && rule.reset === 'after') return call.reset();
        if (rule && rule.disconnect === 'after') return call.disconnect();
        if (rule && rule.after && ruleCode(rule) !== null) {
          const code = ruleCode(rule);
          return call.finish(code, rule.message || `Injected fault: ${CODE_NAME[code] || code}.`);
        }
        call.send(Buffer.from(respType.encode(respType.fromObject(out)).finish()));
        if (rule && rule.goaway === 'after') return call.goaway();
        call.finish(CODE.OK);
      } catch (e) { call.fail(e); }
    };
    call.start();
  }

  // ---- streams -------------------------------------------------------------------------------
  table(name) {
    const m = TABLE_RE.exec(name || '');
    if (!m) throw new GrpcError(CODE.INVALID_ARGUMENT, `Invalid table name: ${name}`);
    const ds = this.bq.datasets.get(`${m[1]}:${m[2]}`);
    const tb = ds && ds.tables.get(m[3]);
    if (!tb) throw entityError(CODE.NOT_FOUND, 'Requested entity was not found.', name, SE.TABLE_NOT_FOUND);
    return tb;
  }
  // Stream state by name; `_default` gets one per table on first use.
  stream(name) {
    const m = STREAM_RE.exec(name || '');
    if (!m) throw new GrpcError(CODE.INVALID_ARGUMENT, `Invalid stream name. Entity: ${name}`);
    const tb = this.table(m[1]);
    let s = this.streams.get(name);
    if (s && s.tb !== tb) { this.streams.delete(name); s = null; } // the table was re-created
    if (!s && m[2] === '_default') {
      s = this.newStream(name, m[1], tb, STREAM_TYPE.COMMITTED);
      s.isDefault = true;
      this.streams.set(name, s);
    }
    if (!s) throw entityError(CODE.NOT_FOUND, 'Requested entity was not found.', name, SE.STREAM_NOT_FOUND);
    return s;
  }
  resource(s, full) {
    const r = { name: s.name, type: s.type, createTime: s.createTime, writeMode: 1, location: s.tb.r.location || 'US' };
    if (s.commitTime) r.commitTime = s.commitTime;
    if (full) r.tableSchema = this.storageSchema(s.tb.fields);
    return r;
  }
  storageSchema(fields) {
    const conv = (f) => {
      const o = { name: f.name, type: STORAGE_TYPE[f.type] || 0, mode: STORAGE_MODE[f.mode] || 1 };
      if (f.fields) o.fields = f.fields.map(conv);
      if (f.description) o.description = f.description;
      if (f.maxLength) o.maxLength = String(f.maxLength);
      if (f.precision) o.precision = String(f.precision);
      if (f.scale) o.scale = String(f.scale);
      if (f.defaultValueExpression) o.defaultValueExpression = f.defaultValueExpression;
      return o;
    };
    return { fields: fields.map(conv) };
  }

  newStream(name, table, tb, type) {
    const s = { name, table, tb, type, isDefault: false, createTime: timestampNow(), rowCount: 0, flushed: 0,
      finalized: false, committed: type === STREAM_TYPE.COMMITTED, pending: [] };
    if (s.committed) s.commitTime = s.createTime;
    return s;
  }
  createWriteStream(req) {
    const tb = this.table(req.parent);
    const ws = req.writeStream || {};
    const type = ws.type || 0;
    if (!STREAM_TYPE_NAME[type]) throw new GrpcError(CODE.INVALID_ARGUMENT, 'WriteStream type must be COMMITTED, PENDING or BUFFERED.');
    const name = `${req.parent}/streams/${crypto.randomBytes(27).toString('base64url')}`;
    const s = this.newStream(name, req.parent, tb, type);
    this.streams.set(name, s);
    return this.resource(s, true);
  }
  getWriteStream(req) {
    const s = this.stream(req.name);
    return this.resource(s, req.view === 2);
  }
  finalizeWriteStream(req) {
    const s = this.stream(req.name);
    if (s.isDefault) throw entityError(CODE.INVALID_ARGUMENT, 'Cannot finalize the default stream.', s.name, SE.INVALID_STREAM_TYPE);
    if (s.committed && s.type === STREAM_TYPE.PENDING) {
      throw entityError(CODE.FAILED_PRECONDITION, 'Stream has already been committed.', s.name, SE.STREAM_ALREADY_COMMITTED);
    }
    s.finalized = true;
    return { rowCount: String(s.rowCount) };
  }
  // All or nothing: every stream must be a finalized, uncommitted PENDING stream of `parent`.
  async batchCommit(req) {
    this.table(req.parent);
    const names = req.writeStreams || [];
    if (!names.length) throw new GrpcError(CODE.INVALID_ARGUMENT, 'No streams to commit.');
    const errs = [];
    const list = [];
    for (const n of names) {
      const s = this.streams.get(n);
      const se = (code, msg) => errs.push({ code, entity: n, errorMessage: msg });
      if (!s || !n.startsWith(req.parent + '/streams/')) se(SE.STREAM_NOT_FOUND, `Stream is not found: ${n}`);
      else if (s.type !== STREAM_TYPE.PENDING) se(SE.INVALID_STREAM_TYPE, `Stream is not a PENDING stream: ${n}`);
      else if (s.committed) se(SE.STREAM_ALREADY_COMMITTED, `Stream is already committed: ${n}`);
      else if (!s.finalized) se(SE.INVALID_STREAM_STATE, `Stream is not finalized: ${n}`);
      else list.push(s);
    }
    if (errs.length) return { streamErrors: errs };
    const t = timestampNow();
    for (const s of list) {
      s.committed = true;
      s.commitTime = t;
      const rows = s.pending;
      s.pending = [];
      await this.writeRows(s.tb, rows);
    }
    return { commitTime: t };
  }
  async flushRows(req) {
    const s = this.stream(req.writeStream);
    if (s.type !== STREAM_TYPE.BUFFERED) {
      throw entityError(CODE.INVALID_ARGUMENT, 'FlushRows is only supported on BUFFERED streams.', s.name, SE.INVALID_STREAM_TYPE);
    }
    const upto = req.offset ? Number(req.offset.value) : s.rowCount - 1;
    if (!(upto < s.rowCount)) {
      throw entityError(CODE.OUT_OF_RANGE, `Offset ${upto} is beyond the end of the stream (${s.rowCount} rows).`, s.name, SE.OFFSET_OUT_OF_RANGE);
    }
    if (upto + 1 > s.flushed) {
      const rows = s.pending.splice(0, upto + 1 - s.flushed);
      s.flushed = upto + 1;
      await this.writeRows(s.tb, rows);
    }
    return { offset: String(upto) };
  }
  writeRows(tb, stored) {
    if (!stored.length) return Promise.resolve();
    return this.bq.write(tb, stored.map(() => ({})), stored);
  }

  // ---- AppendRows ----------------------------------------------------------------------------
  // Messages on one connection are handled in order, each answered before the next is looked
  // at, so responses come back in request order as on the service.
  appendRowsCall(call) {
    const conn = { streamName: null, writerKey: null, writer: null, schemaSeen: null };
    let chain = Promise.resolve();
    let ended = false;
    call.onMessage = (m) => {
      seen++;
      chain = chain.then(() => this.appendOne(call, conn, m)).catch((e) => call.fail(e));
    };
    let seen = 0;
    call.onEnd = () => {
      ended = true;
      chain = chain.then(() => {
        if (call.closed() || call.stalled) return;
        // As the service: a connection closed before any request cannot be routed.
        if (!seen) return call.finish(CODE.INVALID_ARGUMENT, "Cannot route on empty project id ''");
        call.finish(CODE.OK);
      });
    };
    call.start();
  }

  async appendOne(call, conn, m) {
    if (call.closed() || call.stalled) return; // a stalled connection answers nothing more
    let req;
    try { req = this.t.AppendRowsRequest.decode(m); } catch (e) {
      return call.finish(CODE.INVALID_ARGUMENT, `Failed to parse AppendRowsRequest: ${e.message}`);
    }
    const rule = this.faults.match('POST', call.path, call.op, true);
    const r = await this.applyRule(call, rule);
    if (r === 'handled' || call.closed()) return;
    // The connection's stream is named by its first request; later ones may repeat it. A
    // connection may move between tables' `_default` streams (multiplexing, as Google's Go and
    // Java writers do) when the request that moves carries the new table's writer schema.
    if (req.writeStream) {
      if (conn.streamName && req.writeStream !== conn.streamName) {
        const isDef = (n) => /\/streams\/_default$/.test(n);
        if (!isDef(conn.streamName) || !isDef(req.writeStream)) {
          return call.finish(CODE.INVALID_ARGUMENT, `Cannot change the write stream on a connection (from ${conn.streamName} `
            + `to ${req.writeStream}); only default streams can share a connection.`);
        }
        if (!(req.protoRows && req.protoRows.writerSchema && req.protoRows.writerSchema.protoDescriptor)) {
          return call.finish(CODE.INVALID_ARGUMENT, `A writer schema must come with a change of stream (to ${req.writeStream}).`);
        }
        conn.writer = null; conn.writerKey = null; conn.mapping = null; conn.schemaSeen = null;
      }
      conn.streamName = req.writeStream;
    }
    if (!conn.streamName) return call.finish(CODE.INVALID_ARGUMENT, 'Write stream name must be set in the first request of a connection.');
    if (!conn.routingChecked) {
      conn.routingChecked = true;
      if (call.routing !== null && call.routing !== `write_stream=${conn.streamName}`) this.record(`${call.op}.routingHeader`, 'mismatch');
    }
    let s;
    try { s = this.stream(conn.streamName); } catch (e) { return call.fail(e); }
    const ctx = { s, tb: s.tb };
    const reply = (resp) => {
      if (rule && rule.reset === 'after') return call.reset();
      if (rule && rule.disconnect === 'after') return call.disconnect();
      if (rule && rule.after && ruleCode(rule) !== null) { // handled (rows written), answered with an error
        const code = ruleCode(rule);
        return call.finish(code, rule.message || `Injected fault: ${CODE_NAME[code] || code}.`);
      }
      resp.writeStream = s.name;
      if (rule && rule.updatedSchema) resp.updatedSchema = rule.updatedSchema;
      this.record(call.op + '.append', resp.error ? CODE_NAME[resp.error.code] || String(resp.error.code) : 'OK');
      call.send(Buffer.from(this.t.AppendRowsResponse.encode(this.t.AppendRowsResponse.fromObject(resp)).finish()));
      if (rule && rule.goaway === 'after') call.goaway();
    };
    const inband = (err) => reply(Object.assign({ error: this.statusObject(err) }, this.schemaUpdate(conn, s)));
    if (rule && rule.inband) {
      const code = ruleCode(rule);
      return inband(new GrpcError(code === null ? CODE.INTERNAL : code, rule.message || `Injected fault: ${CODE_NAME[code] || code}.`));
    }
    if (m.length > MAX_REQUEST) {
      return inband(entityError(CODE.INVALID_ARGUMENT, `AppendRows request too large: ${m.length} limit ${MAX_REQUEST}.`, s.name));
    }
    const pr = req.protoRows;
    if (!pr) return call.finish(CODE.INVALID_ARGUMENT, `Rows must be specified (proto_rows). Entity: ${s.name}`);
    // writer_schema: required on a connection's first request, repeats are allowed.
    if (pr.writerSchema && pr.writerSchema.protoDescriptor) {
      const bytes = Buffer.from(this.t.DescriptorProto.encode(pr.writerSchema.protoDescriptor).finish());
      const key = bytes.toString('base64');
      if (key !== conn.writerKey) {
        try { conn.writer = this.writerType(bytes); } catch (e) {
          return call.finish(CODE.INVALID_ARGUMENT, `Invalid proto schema: ${e.message} Entity: ${s.name}`);
        }
        conn.writerKey = key;
        conn.mapping = null;
      }
    }
    if (!conn.writer) {
      return call.finish(CODE.INVALID_ARGUMENT, `Proto schema (writer_schema) must be set in the first request of a connection. Entity: ${s.name}`);
    }
    if (conn.schemaSeen === null) conn.schemaSeen = JSON.stringify(s.tb.fields);
    // The writer schema against the table as it is now (a table may have gained columns).
    if (!conn.mapping || conn.mappingFields !== s.tb.fields) {
      try { conn.mapping = this.compileMapping(conn.writer, s.tb.fields, s.table.split('/').pop()); } catch (e) {
        if (e instanceof GrpcError) { e.message += ` Entity: ${s.name}`; if (e.storage) e.storage.entity = s.name; return inband(e); }
        throw e;
      }
      conn.mappingFields = s.tb.fields;
    }
    const rows = (pr.rows && pr.rows.serializedRows) || [];
    if (!rows.length) return inband(new GrpcError(CODE.INVALID_ARGUMENT, `No rows in the request. Entity: ${s.name}`));
    if (s.finalized) return inband(entityError(CODE.INVALID_ARGUMENT, 'Stream is finalized.', s.name, SE.STREAM_FINALIZED));
    if (s.type === STREAM_TYPE.PENDING && s.committed) {
      return inband(entityError(CODE.INVALID_ARGUMENT, 'Stream is already committed.', s.name, SE.STREAM_ALREADY_COMMITTED));
    }
    let offset = null;
    if (req.offset) {
      if (s.isDefault) return inband(entityError(CODE.INVALID_ARGUMENT, 'Offset is not supported on the default stream.', s.name));
      offset = Number(req.offset.value);
      if (offset < s.rowCount) {
        return inband(entityError(CODE.ALREADY_EXISTS, `The offset is within stream, expected offset ${s.rowCount}, received ${offset}`,
          s.name, SE.OFFSET_ALREADY_EXISTS));
      }
      if (offset > s.rowCount) {
        return inband(entityError(CODE.OUT_OF_RANGE, `The offset is beyond stream, expected offset ${s.rowCount}, received ${offset}`,
          s.name, SE.OFFSET_OUT_OF_RANGE));
      }
    }
    // Decode and check every row; one bad row fails the whole request, as on the service.
    const reject = this.faults.rowRejector({ method: 'POST', path: call.path, op: call.op });
    const stored = new Array(rows.length);
    const rowErrors = [];
    let errorWith = 'error';
    for (let i = 0; i < rows.length; i++) {
      const out = this.decodeRow(conn, s.tb, rows[i]);
      if (out.error) { rowErrors.push({ index: String(i), code: 1, message: out.error }); continue; }
      if (reject) {
        const why = reject(i, out.json);
        if (why) {
          if (why.with) errorWith = why.with;
          rowErrors.push({ index: String(i), code: 1, message: why.message });
          continue;
        }
      }
      stored[i] = out.stored;
    }
    if (rowErrors.length && errorWith !== 'error') {
      // an odd server's reply (fault rule rejectRows.with): row_errors beside append_result, or
      // alone; nothing is written either way
      const odd = errorWith === 'result' ? { appendResult: {}, rowErrors } : { rowErrors };
      return reply(Object.assign(odd, this.schemaUpdate(conn, s)));
    }
    if (rowErrors.length) {
      return reply(Object.assign({
        error: { code: CODE.INVALID_ARGUMENT, message: 'Errors found while processing rows. Please refer to the row_errors field for details. '
          + `The list may not be complete because of the size limitations. Entity: ${s.name}` },
        rowErrors,
      }, this.schemaUpdate(conn, s)));
    }
    const first = s.rowCount;
    s.rowCount += rows.length;
    if (s.type === STREAM_TYPE.COMMITTED) await this.writeRows(s.tb, stored);
    else for (const x of stored) s.pending.push(x);
    const resp = { appendResult: s.isDefault ? {} : { offset: { value: String(first) } } };
    return reply(Object.assign(resp, this.schemaUpdate(conn, s)));
  }

  // {updatedSchema} once after the table's schema changed under an open connection.
  schemaUpdate(conn, s) {
    const now = JSON.stringify(s.tb.fields);
    if (conn.schemaSeen === null || conn.schemaSeen === now) return {};
    conn.schemaSeen = now;
    return { updatedSchema: this.storageSchema(s.tb.fields) };
  }

  // The protobufjs type of a writer schema (DescriptorProto bytes), nested types resolved.
  writerType(bytes) {
    const type = this.protobuf.Type.fromDescriptor(bytes);
    const root = new this.protobuf.Root();
    root.add(type);
    root.resolveAll();
    return type;
  }

  // Matches the writer's fields to the table's columns by name, case-insensitively. Throws GrpcError INVALID_ARGUMENT for a field the table lacks or a
  // type or mode the column cannot take. Returns [{pname, col, sub, repeated}] per field.
  compileMapping(type, fields, where) {
    const byLower = new Map(fields.map((f) => [f.name.toLowerCase(), f]));
    const extra = [];
    const out = [];
    for (const pf of type.fieldsArray) {
      const col = byLower.get(pf.name.toLowerCase());
      if (!col) { extra.push(pf.name); continue; }
      const isMessage = !!pf.resolvedType && pf.resolvedType instanceof this.protobuf.Type;
      const ptype = pf.resolvedType && !isMessage ? 'enum' : pf.type;
      const loc = `${where}.${col.name}`;
      if (!protoTypeFits(col, ptype, isMessage)) {
        throw new GrpcError(CODE.INVALID_ARGUMENT, `The proto field mismatched with BigQuery field at ${loc}, `
          + `the proto field type ${isMessage ? 'message' : ptype}, BigQuery field type ${col.type}`);
      }
      if ((col.mode === 'REPEATED') !== pf.repeated) {
        throw new GrpcError(CODE.INVALID_ARGUMENT, `The proto field mismatched with BigQuery field at ${loc}, `
          + `the proto field mode ${pf.repeated ? 'repeated' : 'optional'}, BigQuery field mode ${col.mode}`);
      }
      const m = { pname: pf.name, col, ptype, repeated: pf.repeated };
      if (col.type === 'RECORD') m.sub = this.compileMapping(pf.resolvedType, col.fields, loc);
      out.push(m);
    }
    if (extra.length) {
      throw new GrpcError(CODE.INVALID_ARGUMENT, `Input schema has more fields than BigQuery schema, extra fields: '${extra.join(',')}'`,
        { code: SE.SCHEMA_MISMATCH_EXTRA_FIELDS });
    }
    return out;
  }

  // Decodes one serialized row and checks it against the table. Returns {stored, json} or
  // {error: message}.
  decodeRow(conn, tb, bytes) {
    let msg;
    try { msg = conn.writer.decode(bytes); } catch (e) {
      const req = /^missing required '(.*)'$/.exec(e.message);
      if (req) return { error: `Missing required field: ${req[1]}.` };
      return { error: `Could not parse the row as a ${conn.writer.name} message: ${e.message}` };
    }
    const ctx = { ignoreUnknown: false, msg: '', loc: '' };
    let json;
    try { json = this.toJson(conn.mapping, msg, ''); } catch (e) { return { error: e.message }; }
    const stored = tb.validate(json, ctx, '');
    if (stored === schema.FAIL) return { error: `${ctx.msg}${ctx.loc ? ` Field: ${ctx.loc}` : ''}` };
    return { stored, json };
  }

  // A decoded row as the JSON insertAll would take, so the table's own checks apply.
  toJson(mapping, msg, prefix) {
    const out = {};
    for (const m of mapping) {
      if (!Object.prototype.hasOwnProperty.call(msg, m.pname)) continue;
      const v = msg[m.pname];
      if (m.repeated) {
        if (!v || !v.length) continue;
        out[m.col.name] = v.map((x) => this.value(m, x, prefix));
      } else {
        if (v === null || v === undefined) continue;
        out[m.col.name] = this.value(m, v, prefix);
      }
    }
    return out;
  }
  value(m, v, prefix) {
    const col = m.col;
    const loc = prefix + col.name;
    if (m.sub) return this.toJson(m.sub, v, loc + '.');
    const num = (x) => (typeof x === 'object' && x !== null && typeof x.toString === 'function' ? x.toString() : String(x));
    switch (col.type) {
      case 'INTEGER': return num(v);
      case 'FLOAT':
        if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : v;
        return Number(num(v));
      case 'BOOLEAN': return typeof v === 'boolean' ? v : num(v) !== '0';
      case 'BYTES': return (v instanceof Uint8Array ? Buffer.from(v) : Buffer.from(String(v))).toString('base64');
      case 'TIMESTAMP': {
        if (typeof v === 'string') return v;
        const iso = microsToIso(num(v));
        if (!iso) throw new Error(`Timestamp field value is out of range: ${num(v)} Field: ${loc}`);
        return iso;
      }
      case 'DATE': {
        if (typeof v === 'string') return v;
        const d = daysToDate(Number(num(v)));
        if (!d) throw new Error(`Date field value is out of range: ${num(v)} Field: ${loc}`);
        return d;
      }
      case 'NUMERIC': case 'BIGNUMERIC':
        return typeof v === 'string' ? v : num(v);
      default: return typeof v === 'string' ? v : num(v);
    }
  }

  // Decodes rows as AppendRows does, without a server or a table: `fields` a tables.insert
  // schema, `descriptor` DescriptorProto bytes, `rows` serialized rows. Returns {schemaError}
  // or {rows: [{stored} | {error}]} (stored: the table file's row form). For differential tests
  // of encoders (the storage-decode command).
  decodeStandalone(fields, descriptor, rows) {
    const norm = schema.normalizeFields(fields);
    const conn = {};
    try {
      conn.writer = this.writerType(descriptor);
      conn.mapping = this.compileMapping(conn.writer, norm, 'root');
    } catch (e) { return { schemaError: e.message }; }
    const tb = { validate: schema.compileRecord(norm) };
    return {
      rows: rows.map((r) => { const o = this.decodeRow(conn, tb, r); return o.error ? { error: o.error } : { stored: o.stored }; }),
    };
  }

  summary() {
    const out = {};
    for (const s of this.streams.values()) {
      out[s.name] = { type: STREAM_TYPE_NAME[s.type], rowCount: s.rowCount, finalized: s.finalized, committed: s.committed };
    }
    return out;
  }
}

// The gRPC code a fault rule asks for: grpcCode (number or name) or an HTTP status mapped; null for none.
function ruleCode(rule) {
  if (rule.grpcCode !== undefined) {
    if (typeof rule.grpcCode === 'number') return rule.grpcCode;
    const c = CODE[String(rule.grpcCode).toUpperCase()];
    return c === undefined ? CODE.UNKNOWN : c;
  }
  if (rule.status) return CODE_BY_HTTP[rule.status] !== undefined ? CODE_BY_HTTP[rule.status] : CODE.UNKNOWN;
  return null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { BigQueryWrite, CODE };
