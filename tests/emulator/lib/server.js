'use strict';
// The HTTP front: one server, one port, routing by path prefix exactly as Google's hosts do,
// plus the request context every API handler uses (body, query, replies), fault injection,
// auth checks and counters. Each API lives in its own module; this file only dispatches.

const http = require('http');
const http2 = require('http2');
const fs = require('fs');
const zlib = require('zlib');
const { ApiError, envelope, bad, PROJECT_RE } = require('./errors');
const { PubSub } = require('./pubsub');
const { BigQuery } = require('./bigquery');
const { Gcs } = require('./gcs');
const { Auth } = require('./auth');
const { Faults } = require('./faults');
const { Discovery } = require('./discovery');
const { BigQueryWrite } = require('./bigquery_write');
const admin = require('./admin');

const MAX_BODY = 256 * 1024 * 1024;
const JSON_TYPE = 'application/json; charset=UTF-8';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Per-request context handed to the API handlers.
class Ctx {
  constructor(app, req, res) {
    this.app = app;
    this.req = req;
    this.res = res;
    this.method = req.method;
    const url = req.url || '/';
    const q = url.indexOf('?');
    this.path = q < 0 ? url : url.slice(0, q);
    this.query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    this.body = EMPTY;
    this.api = 'other';
    this.op = 'unknown';
    this.resetAfter = false;
    this.replied = false;
    const host = req.headers.host || req.headers[':authority'] || `127.0.0.1:${app.port}`;
    this.base = `${app.tls ? 'https' : 'http'}://${host}`;
  }
  // Parsed JSON body; `emptyOk` lets an empty body stand for {}; `parse` reads the text
  // (json_exact.parse keeps integers past 2^53 exact).
  json(emptyOk = true, parse = JSON.parse) {
    if (this._json !== undefined) return this._json;
    const text = this.body.toString('utf8');
    if (!text.trim()) {
      if (!emptyOk) throw bad('Request body is empty; a JSON object is required.');
      return (this._json = {});
    }
    let v;
    try { v = parse(text); } catch (e) {
      throw bad(`Invalid JSON payload received. ${e.message.slice(0, 200)}`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('Invalid JSON payload received. Expected a JSON object.');
    return (this._json = v);
  }
  closed() { return this.res.destroyed || this.res.writableEnded || (this.req.socket && this.req.socket.destroyed); }
  onClose(fn) { this.res.on('close', fn); }
  finishReply(status) {
    this.replied = true;
    // Admin calls are not counted, so tests can read counters without disturbing them.
    if (!this.op.startsWith('admin.')) this.app.faults.record(this.op, status);
    if (this.app.verbose) process.stderr.write(`${this.method} ${this.path} -> ${status} (${this.op})\n`);
  }
  // Writes the reply unless a fault says to drop the connection instead. `chunked` leaves out
  // Content-Length (HTTP/1.1 then sends the body chunked), as GCS does for a transcoded object.
  write(status, headers, body, chunked = false) {
    if (this.replied) return;
    this.finishReply(this.resetAfter ? 'reset' : status);
    if (this.resetAfter) return this.app.destroy(this.req, this.res);
    if (this.res.destroyed) return;
    if (!chunked) headers['Content-Length'] = body.length;
    this.res.writeHead(status, headers);
    this.res.end(body);
  }
  send(status, obj, headers) { this.sendText(status, JSON.stringify(obj), headers); }
  sendText(status, text, headers) {
    this.write(status, Object.assign({ 'Content-Type': JSON_TYPE }, headers), Buffer.from(text));
  }
  sendJson(status, buf) { this.write(status, { 'Content-Type': JSON_TYPE }, buf); }
  sendRaw(status, buf, headers) { this.write(status, Object.assign({}, headers), buf); }
  sendChunked(status, buf, headers) { this.write(status, Object.assign({}, headers), buf, true); }
  sendEmpty(status) { this.write(status, {}, EMPTY); }
  sendError(err) {
    if (!(err instanceof ApiError)) {
      process.stderr.write(`emulator: internal error on ${this.method} ${this.path}: ${err && err.stack}\n`);
      err = new ApiError(500, 'Internal error encountered.');
    }
    this.send(err.code, envelope(this.api, err), err.headers);
  }
}
const EMPTY = Buffer.alloc(0);

// Bytes of a request's line and headers as HTTP/1.1 sends them ("NAME: VALUE\r\n" each, the
// blank line): what a client spent on them besides the body, for `make bench`'s bytes per
// event. Over HTTP/2 (HPACK) the same headers take fewer bytes; this is the plain-text size.
function headerBytes(req) {
  let n = req.method.length + req.url.length + 'HTTP/1.1'.length + 4 + 2;
  const h = req.rawHeaders || [];
  for (let i = 0; i + 1 < h.length; i += 2) n += h[i].length + h[i + 1].length + 4;
  return n;
}

class App {
  constructor(opts) {
    this.opts = opts;
    this.port = opts.port;
    this.tls = !!opts.tlsCert;
    this.verbose = !!opts.verbose;
    this.faults = new Faults();
    this.auth = new Auth(opts);
    this.pubsub = new PubSub(opts);
    this.bigquery = new BigQuery(opts, this.faults);
    this.gcs = new Gcs(opts);
    this.discovery = new Discovery(opts.bqDiscovery);
  }

  // Returns {api, op, fn, admin?, auth?} for a request, or null when nothing serves the path.
  route(c) {
    const p = c.path;
    const m = c.method;
    const segs = (prefixLen) => p.slice(prefixLen).split('/').filter((s) => s !== '').map(dec);
    if (p.startsWith('/_emulator/')) return admin.route(this, c);
    if (p === '/token' || p === '/oauth2/v4/token' || p === '/o/oauth2/token') {
      return m === 'POST' ? { api: 'oauth2', op: 'oauth2.token', fn: (x) => this.auth.token(x) } : null;
    }
    if (p === '/$discovery/rest' || p === '/discovery/v1/apis/bigquery/v2/rest') {
      return m === 'GET' ? { api: 'discovery', op: 'discovery.get', fn: (x) => this.discovery.serve(x) } : null;
    }
    if (p.startsWith('/computeMetadata/v1')) {
      return m === 'GET' ? { api: 'metadata', op: 'metadata.get', fn: (x) => this.auth.metadata(x, p.slice('/computeMetadata/v1'.length)) } : null;
    }
    let r = null; let api;
    if (p.startsWith('/v1/')) { api = 'pubsub'; r = this.pubsub.route(m, segs(4)); }
    else if (p.startsWith('/bigquery/v2/')) { api = 'bigquery'; r = this.bigquery.route(m, segs(13)); }
    else if (p.startsWith('/projects/')) { api = 'bigquery'; r = this.bigquery.route(m, segs(1)); }
    else if (p.startsWith('/upload/storage/v1/')) { api = 'gcs'; r = this.gcs.route(m, segs(19), 'upload', c.query); }
    else if (p.startsWith('/download/storage/v1/')) { api = 'gcs'; r = this.gcs.route(m, segs(21), 'download', c.query); }
    else if (p.startsWith('/storage/v1/')) { api = 'gcs'; r = this.gcs.route(m, segs(12), 'json', c.query); }
    else if (p === '/b' || p.startsWith('/b/') || p.startsWith('/b?')) { api = 'gcs'; r = this.gcs.route(m, segs(1), 'json', c.query); }
    if (!api) return null;
    c.api = api;
    // Project ids become folder names under --data: refuse anything that could leave it.
    const pm = /^\/(?:v1\/|bigquery\/v2\/)?projects\/([^/]+)/.exec(p);
    if (pm && !PROJECT_RE.test(dec(pm[1]))) {
      return { api, op: `${api}.invalidProject`, fn: () => { throw bad(`Invalid project id: ${dec(pm[1]).slice(0, 100)}`); } };
    }
    if (!r) return { api, op: `${api}.unknown`, auth: true, fn: () => { throw new ApiError(404, `Not found: ${m} ${p}`, { status: 'NOT_FOUND' }); } };
    return Object.assign(r, { api, auth: true });
  }

  async handle(req, res) {
    const c = new Ctx(this, req, res);
    try {
      let route;
      try { route = this.route(c); } catch (e) {
        if (e instanceof URIError) throw bad('Invalid percent-encoding in the request path.');
        throw e;
      }
      if (!route) {
        c.op = 'unrouted';
        throw new ApiError(404, `The emulator does not serve ${c.method} ${c.path}.`);
      }
      c.api = route.api;
      c.op = route.op;
      const rule = route.admin ? null : this.faults.match(c.method, c.path, c.op);
      if (rule) {
        if (rule.latencyMs) await sleep(rule.latencyMs);
        if (rule.stall) {
          if (rule.stall === true || rule.stall === 'forever') { c.finishReply('stalled'); return; } // never answered
          await sleep(Number(rule.stall) * 1000);
        }
        if (rule.reset === true || rule.reset === 'before') { c.finishReply('reset'); return this.destroy(req, res); }
      }
      c.body = await this.readBody(req, c);
      if (!route.admin) this.faults.recordBytes(c.op, c.wireBytes + headerBytes(req));
      if (rule && rule.body !== undefined) {
        return c.sendRaw(rule.status || 200, Buffer.from(rule.body),
          Object.assign({ 'Content-Type': JSON_TYPE }, rule.headers || {}));
      }
      if (rule && rule.status) {
        throw new ApiError(rule.status, rule.message || `Injected fault: HTTP ${rule.status}.`,
          { status: rule.grpcStatus, reason: rule.reason });
      }
      if (rule && rule.reset === 'after') c.resetAfter = true;
      c.rule = rule; // for handlers that apply a rule themselves (ackIdResult)
      if (route.auth) {
        const why = this.auth.check(req);
        if (why) {
          throw new ApiError(401, why, { reason: 'authError', location: 'Authorization', locationType: 'header',
            headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' } });
        }
      }
      await route.fn(c);
      if (!c.replied && !c.resetAfter) throw new Error('handler did not reply');
    } catch (e) {
      if (!c.replied) c.sendError(e);
    }
  }

  // Reads the whole body; gunzips `Content-Encoding: gzip` (a transport encoding, as the Java
  // client sends every JSON body and multipart upload) except where GCS takes the header as
  // the object's own encoding and stores the gzip bytes as they are: a media upload (its
  // only way to say contentEncoding) and the data chunks of a resumable upload.
  readBody(req, c) {
    return new Promise((resolve, reject) => {
      const chunks = [];
      let n = 0;
      req.on('data', (d) => {
        n += d.length;
        if (n > MAX_BODY) { reject(new ApiError(413, `Request body exceeds ${MAX_BODY} bytes.`)); req.destroy(); return; }
        chunks.push(d);
      });
      req.on('error', reject);
      req.on('end', () => {
        c.wireBytes = n;
        let body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, n);
        const enc = req.headers['content-encoding'];
        if (enc && /gzip/i.test(enc) && !storesAsIs(c)) {
          // decompressed, a body has the same limit as on the wire (a small bomb stays small)
          try { body = zlib.gunzipSync(body, { maxOutputLength: MAX_BODY }); } catch (e) {
            if (e.code === 'ERR_BUFFER_TOO_LARGE') return reject(new ApiError(413, `Request body exceeds ${MAX_BODY} bytes once decompressed.`));
            return reject(bad('Request body is not valid gzip data.'));
          }
        }
        resolve(body);
      });
    });
  }

  // Drops the connection without an HTTP reply (HTTP/1.1: the TCP socket; HTTP/2: the stream).
  destroy(req, res) {
    if (req.stream) req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else if (req.socket) req.socket.destroy();
    else res.destroy();
  }

  listen() {
    const handler = (req, res) => { this.handle(req, res); };
    let server;
    if (this.tls) {
      server = http2.createSecureServer({
        cert: fs.readFileSync(this.opts.tlsCert), key: fs.readFileSync(this.opts.tlsKey), allowHTTP1: true,
        settings: { maxConcurrentStreams: 1000 },
      }, handler);
      server.setTimeout(0);
    } else {
      server = http.createServer({ keepAliveTimeout: 120000, requestTimeout: 0, headersTimeout: 125000 }, handler);
    }
    // libcurl keeps connections for reuse; close idle ones well after any client would.
    server.keepAliveTimeout = 120000;
    server.headersTimeout = 125000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        this.port = server.address().port;
        resolve(this.port);
      });
    });
  }

  // Serves the Storage Write API on opts.grpcPort when its npm packages are there.
  // Resolves {port} or {reason} (why it is not served).
  async listenGrpc() {
    if (this.opts.grpcPort === -1) return { reason: '--grpc-port -1' };
    const r = BigQueryWrite.load(this);
    if (!r.service) return r;
    this.bigqueryWrite = r.service;
    return { port: await r.service.listen(this.opts.host, this.opts.grpcPort || 0,
                                          this.opts.grpcMaxStreams || 1000) };
  }

  close() {
    if (this.bigqueryWrite) this.bigqueryWrite.close();
    this.pubsub.close();
    this.bigquery.close();
    if (this.server) this.server.close();
  }
}

function dec(s) { return decodeURIComponent(s); }

// Whether a request's body is object data that GCS stores byte for byte whatever its
// Content-Encoding: media uploads and resumable upload chunks.
function storesAsIs(c) {
  if (!c.path.startsWith('/upload/')) return false;
  const t = c.query.get('uploadType');
  return !!c.query.get('upload_id') || t === 'media' || !t;
}

module.exports = { App };
