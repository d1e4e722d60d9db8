'use strict';
// Cloud Storage JSON API: buckets, objects (get/list/delete) and the three upload protocols
// (media, multipart, resumable).
//
// Layout: object bytes at DIR/gcs/B/NAME (so a person can open them directly), metadata in
// DIR/gcs-meta/B/<encodeURIComponent(NAME)>.json, bucket resources in DIR/gcs-meta/B.bucket.json,
// unfinished resumable uploads in DIR/gcs-uploads/<id>.{json,data}. Only the live generation
// of each object is kept.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const zlib = require('zlib');
const { ApiError, bad, notFound } = require('./errors');
const store = require('./store');
const { crc32cBase64 } = require('./crc32c');

const CHUNK = 256 * 1024;
const BUCKET_RE = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

let lastGen = 0;
// Generations are microsecond timestamps, strictly increasing across the whole emulator.
function nextGeneration() {
  lastGen = Math.max(lastGen + 1, Date.now() * 1000);
  return lastGen;
}

const sha1 = (s) => crypto.createHash('sha1').update(s).digest('hex');
const preconditionFailed = () => new ApiError(412, 'At least one of the pre-conditions you specified did not hold.',
  { reason: 'conditionNotMet', location: 'If-Match', locationType: 'header' });

class Gcs {
  constructor(opts) {
    this.dataDir = path.join(opts.data, 'gcs');
    this.metaDir = path.join(opts.data, 'gcs-meta');
    this.upDir = path.join(opts.data, 'gcs-uploads');
    this.buckets = new Map(); // name -> {r, objects: Map name -> meta, sorted: string[]|null}
    this.uploads = new Map(); // upload id -> session
    this.load();
  }

  load() {
    for (const f of store.listDir(this.metaDir)) {
      if (!f.endsWith('.bucket.json')) continue;
      const r = store.readJson(path.join(this.metaDir, f));
      if (!r || !r.name) continue;
      const b = { r, objects: new Map(), sorted: null };
      this.buckets.set(r.name, b);
      for (const mf of store.listDir(path.join(this.metaDir, r.name))) {
        if (!mf.endsWith('.json')) continue;
        const m = store.readJson(path.join(this.metaDir, r.name, mf));
        if (m && m.name !== undefined) {
          b.objects.set(m.name, m);
          lastGen = Math.max(lastGen, Number(m.generation));
        }
      }
    }
    for (const f of store.listDir(this.upDir)) {
      if (!f.endsWith('.json')) continue;
      const s = store.readJson(path.join(this.upDir, f));
      if (s && s.id) this.uploads.set(s.id, s);
    }
  }

  // kind: 'json' (segments after /storage/v1 or bare), 'upload', 'download'.
  route(method, segs, kind, query) {
    if (segs[0] !== 'b') return null;
    const n = segs.length;
    if (kind === 'upload') {
      if (n !== 3 || segs[2] !== 'o') return null;
      const B = segs[1];
      const type = query.get('uploadType');
      if (query.get('upload_id')) {
        if (method === 'PUT' || method === 'POST') return { op: 'storage.objects.insert.resumableChunk', fn: (c) => this.resumableChunk(c, B) };
        if (method === 'DELETE') return { op: 'storage.objects.insert.resumableCancel', fn: (c) => this.resumableCancel(c) };
        return null;
      }
      if (method !== 'POST') return null;
      if (type === 'resumable') return { op: 'storage.objects.insert.resumable', fn: (c) => this.resumableStart(c, B) };
      if (type === 'multipart') return { op: 'storage.objects.insert.multipart', fn: (c) => this.multipart(c, B) };
      if (type === 'media' || !type) return { op: 'storage.objects.insert.media', fn: (c) => this.media(c, B) };
      return { op: 'storage.objects.insert', fn: () => { throw bad(`Invalid upload type: ${type}`); } };
    }
    if (n === 1) {
      if (method === 'POST' && kind === 'json') return { op: 'storage.buckets.insert', fn: (c) => this.insertBucket(c) };
      if (method === 'GET' && kind === 'json') return { op: 'storage.buckets.list', fn: (c) => this.listBuckets(c) };
      return null;
    }
    const B = segs[1];
    if (n === 2 && kind === 'json') {
      if (method === 'GET') return { op: 'storage.buckets.get', fn: (c) => c.send(200, this.bucketResource(c, this.bucket(B))) };
      if (method === 'DELETE') return { op: 'storage.buckets.delete', fn: (c) => this.deleteBucket(c, B) };
      return null;
    }
    if (segs[2] !== 'o') return null;
    if (n === 3) {
      if (method === 'GET' && kind === 'json') return { op: 'storage.objects.list', fn: (c) => this.list(c, B) };
      return null;
    }
    // A client that did not encode '/' in the name gives several segments: join them back.
    const name = segs.slice(3).join('/');
    if (method === 'GET') {
      const media = kind === 'download' || query.get('alt') === 'media';
      return media
        ? { op: 'storage.objects.get.media', fn: (c) => this.getMedia(c, B, name) }
        : { op: 'storage.objects.get', fn: (c) => this.getObject(c, B, name) };
    }
    if (method === 'DELETE' && kind === 'json') return { op: 'storage.objects.delete', fn: (c) => this.deleteObject(c, B, name) };
    return null;
  }

  // ---- buckets -----------------------------------------------------------------------------
  bucket(B) {
    const b = this.buckets.get(B);
    if (!b) throw notFound('The specified bucket does not exist.');
    return b;
  }
  createBucket(name, body = {}) {
    if (typeof name !== 'string' || !BUCKET_RE.test(name) || name.includes('..'))
      throw bad(`Invalid bucket name: '${name}'`);
    if (this.buckets.has(name))
      throw new ApiError(409, 'Your previous request to create the named bucket succeeded and you already own it.', { reason: 'conflict' });
    const now = new Date().toISOString();
    const r = {
      kind: 'storage#bucket', id: name, name, projectNumber: '123456789012',
      metageneration: '1', location: String(body.location || 'US').toUpperCase(), storageClass: body.storageClass || 'STANDARD',
      etag: 'CAE=', timeCreated: now, updated: now, locationType: 'multi-region',
    };
    if (body.labels) r.labels = body.labels;
    if (body.versioning) r.versioning = body.versioning;
    store.writeJson(path.join(this.metaDir, name + '.bucket.json'), r);
    store.mkdirp(path.join(this.dataDir, name));
    const b = { r, objects: new Map(), sorted: null };
    this.buckets.set(name, b);
    return b;
  }
  bucketResource(c, b) { return Object.assign({}, b.r, { selfLink: `${c.base}/storage/v1/b/${b.r.name}` }); }
  insertBucket(c) {
    const body = c.json();
    c.send(200, this.bucketResource(c, this.createBucket(body.name, body)));
  }
  listBuckets(c) {
    const items = [...this.buckets.values()].map((b) => this.bucketResource(c, b));
    const out = { kind: 'storage#buckets' };
    if (items.length) out.items = items;
    c.send(200, out);
  }
  deleteBucket(c, B) {
    const b = this.bucket(B);
    if (b.objects.size) throw new ApiError(409, 'The bucket you tried to delete is not empty.', { reason: 'conflict' });
    this.buckets.delete(B);
    store.rm(path.join(this.metaDir, B + '.bucket.json'));
    store.rm(path.join(this.metaDir, B));
    store.rm(path.join(this.dataDir, B));
    c.sendEmpty(204);
  }

  // ---- objects -----------------------------------------------------------------------------
  metaFile(B, name) {
    const enc = encodeURIComponent(name);
    return path.join(this.metaDir, B, (enc.length > 200 ? sha1(name) : enc) + '.json');
  }
  checkName(name) {
    if (typeof name !== 'string' || name.length === 0) throw bad('Required', { reason: 'required' });
    if (Buffer.byteLength(name) > 1024 || /[\r\n]/.test(name) || name === '.' || name === '..')
      throw bad(`The specified object name is not valid: ${name.slice(0, 100)}`);
  }
  // Checks if*Match query parameters against the live object (or its absence).
  checkPreconditions(q, cur) {
    const g = q.get('ifGenerationMatch');
    if (g !== null) {
      if (g === '0' ? !!cur : !cur || cur.generation !== g) throw preconditionFailed();
    }
    const gn = q.get('ifGenerationNotMatch');
    if (gn !== null) {
      if (gn === '0' ? !cur : cur && cur.generation === gn) throw preconditionFailed();
    }
    const mg = q.get('ifMetagenerationMatch');
    if (mg !== null && (!cur || cur.metageneration !== mg)) throw preconditionFailed();
    const mgn = q.get('ifMetagenerationNotMatch');
    if (mgn !== null && cur && cur.metageneration === mgn) throw preconditionFailed();
  }
  objectResource(c, m) {
    const enc = encodeURIComponent(m.name);
    const r = Object.assign({}, m, {
      selfLink: `${c.base}/storage/v1/b/${m.bucket}/o/${enc}`,
      mediaLink: `${c.base}/download/storage/v1/b/${m.bucket}/o/${enc}?generation=${m.generation}&alt=media`,
    });
    delete r._file;
    return r;
  }

  // Stores a complete object and returns its metadata. meta: {contentType, contentEncoding, metadata, ...}
  putObject(B, name, data, meta, q) {
    const b = this.bucket(B);
    this.checkName(name);
    const cur = b.objects.get(name);
    this.checkPreconditions(q, cur);
    const gen = String(nextGeneration());
    const now = new Date().toISOString();
    const m = {
      kind: 'storage#object', id: `${B}/${name}/${gen}`, name, bucket: B, generation: gen, metageneration: '1',
      contentType: meta.contentType || 'application/octet-stream', storageClass: 'STANDARD', size: String(data.length),
      md5Hash: crypto.createHash('md5').update(data).digest('base64'), crc32c: crc32cBase64(data),
      etag: Buffer.from(gen).toString('base64'), timeCreated: now, updated: now, timeStorageClassUpdated: now,
    };
    for (const k of ['contentType', 'contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl'])
      if (meta[k] !== undefined && meta[k] !== null && typeof meta[k] !== 'string') throw bad(`Invalid value for ${k}: a string is required.`);
    for (const k of ['contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl', 'metadata', 'customTime'])
      if (meta[k] !== undefined && meta[k] !== null) m[k] = meta[k];
    if (meta.md5Hash && meta.md5Hash !== m.md5Hash)
      throw bad(`Provided MD5 hash "${meta.md5Hash}" doesn't match calculated MD5 hash "${m.md5Hash}".`);
    if (meta.crc32c && meta.crc32c !== m.crc32c)
      throw bad(`Provided CRC32C "${meta.crc32c}" doesn't match calculated CRC32C "${m.crc32c}".`);
    m._file = this.writeData(B, name, data);
    if (cur && cur._file !== m._file) store.rm(path.join(this.dataDir, B, cur._file));
    store.writeJson(this.metaFile(B, name), m);
    if (!cur) b.sorted = null;
    b.objects.set(name, m);
    return m;
  }
  // Writes bytes at gcs/B/NAME when the name maps cleanly to a path, else in a flat folder.
  writeData(B, name, data) {
    const segs = name.split('/');
    const clean = segs.every((s) => s && s !== '.' && s !== '..' && Buffer.byteLength(s) < 200 && !s.startsWith('.emulator-'));
    if (clean) {
      try {
        store.writeFileAtomic(path.join(this.dataDir, B, name), data);
        return name;
      } catch (e) { /* a file/folder clash such as "a" and "a/b": use the flat folder */ }
    }
    const rel = path.join('.emulator-flat', sha1(name));
    store.writeFileAtomic(path.join(this.dataDir, B, rel), data);
    return rel;
  }
  readData(B, m) { return fs.readFileSync(path.join(this.dataDir, B, m._file)); }

  object(B, name) {
    const m = this.bucket(B).objects.get(name);
    if (!m) throw notFound(`No such object: ${B}/${name}`);
    return m;
  }
  getObject(c, B, name) {
    const m = this.object(B, name);
    const g = c.query.get('generation');
    if (g && g !== m.generation) throw notFound(`No such object: ${B}/${name}`);
    this.checkPreconditions(c.query, m);
    c.send(200, this.objectResource(c, m));
  }
  // objects.get with alt=media (and the /download/ path). An object whose metadata says
  // contentEncoding gzip is served the way GCS's decompressive transcoding serves it
  // (https://cloud.google.com/storage/docs/transcoding):
  //  - a request without `Accept-Encoding: gzip` gets the decompressed bytes with neither
  //    Content-Encoding nor Content-Length (GCS streams them chunked); a Range header is then
  //    ignored and the whole object comes back with 200, since GCS cannot seek in the output;
  //  - a request that accepts gzip, or any request when the object's Cache-Control has
  //    no-transform, gets the stored bytes as they are with `Content-Encoding: gzip`, and a
  //    Range applies to those stored bytes (206);
  //  - either way `x-goog-stored-content-encoding` and `x-goog-stored-content-length` describe
  //    the stored bytes, and `x-goog-hash` is that of the stored bytes, so a client can only
  //    check it when it received them (the Node client checks exactly that).
  // A stored object that is not valid gzip cannot be transcoded: GCS would cut its chunked
  // reply short; the emulator decompresses before answering and so says it with an error.
  getMedia(c, B, name) {
    const m = this.object(B, name);
    const g = c.query.get('generation');
    if (g && g !== m.generation) throw notFound(`No such object: ${B}/${name}`);
    this.checkPreconditions(c.query, m);
    let data = this.readData(B, m);
    const headers = {
      'Content-Type': m.contentType,
      'x-goog-hash': `crc32c=${m.crc32c},md5=${m.md5Hash}`,
      'x-goog-generation': m.generation, 'x-goog-metageneration': m.metageneration,
      'x-goog-stored-content-encoding': m.contentEncoding || 'identity',
      'x-goog-stored-content-length': m.size, 'x-goog-storage-class': m.storageClass,
      ETag: m.etag, 'Last-Modified': new Date(m.updated).toUTCString(),
    };
    if (isGzip(m.contentEncoding)) {
      if (!acceptsGzip(c.req.headers['accept-encoding']) && !noTransform(m.cacheControl)) {
        try { data = zlib.gunzipSync(data); } catch (e) {
          throw new ApiError(500, `Object ${B}/${name} has Content-Encoding: gzip but its stored bytes are not valid gzip ` +
            `(${e.message}), so it cannot be served decompressed; request it with Accept-Encoding: gzip to read the stored bytes.`,
          { reason: 'backendError' });
        }
        return c.sendChunked(200, data, headers);
      }
      headers['Content-Encoding'] = 'gzip';
    } else if (m.contentEncoding) {
      // Other encodings (br, ...) are never transcoded: the stored bytes under their own name.
      headers['Content-Encoding'] = m.contentEncoding;
    }
    const range = /^bytes=(\d*)-(\d*)$/.exec(c.req.headers.range || '');
    if (range && (range[1] || range[2])) {
      let a; let b;
      if (range[1] === '') { a = Math.max(0, data.length - Number(range[2])); b = data.length - 1; } else {
        a = Number(range[1]); b = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
      }
      if (a >= data.length || a > b) {
        return c.sendRaw(416, Buffer.from('Requested range not satisfiable'), { 'Content-Range': `bytes */${data.length}`, 'Content-Type': 'text/plain' });
      }
      headers['Content-Range'] = `bytes ${a}-${b}/${data.length}`;
      return c.sendRaw(206, data.subarray(a, b + 1), headers);
    }
    c.sendRaw(200, data, headers);
  }
  deleteObject(c, B, name) {
    const b = this.bucket(B);
    const m = this.object(B, name);
    const g = c.query.get('generation');
    if (g && g !== m.generation) throw notFound(`No such object: ${B}/${name}`);
    this.checkPreconditions(c.query, m);
    b.objects.delete(name);
    b.sorted = null;
    store.rm(path.join(this.dataDir, B, m._file));
    store.rm(this.metaFile(B, name));
    c.sendEmpty(204);
  }

  // objects.list with prefix/delimiter grouping; maxResults counts items and prefixes.
  list(c, B) {
    const b = this.bucket(B);
    if (!b.sorted) b.sorted = [...b.objects.keys()].sort();
    const q = c.query;
    const prefix = q.get('prefix') || '';
    const delim = q.get('delimiter') || '';
    // listPageMax (POST /_emulator/config): shorter pages than asked, as the service may answer
    const max = Math.min(Number(q.get('maxResults')) || 1000, 1000, this.listPageMax || 1000);
    const startOffset = q.get('startOffset') || '';
    const endOffset = q.get('endOffset') || '';
    const trailing = q.get('includeTrailingDelimiter') === 'true';
    let after = '';
    const tok = q.get('pageToken');
    if (tok) after = Buffer.from(tok, 'base64url').toString();
    const names = b.sorted;
    // Binary search for the first name >= max(prefix, startOffset) and > after.
    let lo = 0; let hi = names.length;
    const from = prefix > startOffset ? prefix : startOffset;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (names[mid] < from) lo = mid + 1; else hi = mid; }
    const items = []; const prefixes = []; let count = 0; let last = null; let more = false;
    for (let i = lo; i < names.length; i++) {
      const n = names[i];
      if (!n.startsWith(prefix)) break;
      if (endOffset && n >= endOffset) break;
      if (after && n <= after) continue;
      if (count >= max) { more = true; break; }
      if (delim) {
        const j = n.indexOf(delim, prefix.length);
        if (j >= 0) {
          const p = n.slice(0, j + delim.length);
          if (prefixes[prefixes.length - 1] !== p) { prefixes.push(p); count++; }
          if (trailing && j + delim.length === n.length) items.push(this.objectResource(c, b.objects.get(n)));
          // The whole group is consumed: continue the next page after its last member.
          last = p + '\uffff';
          while (i + 1 < names.length && names[i + 1].startsWith(p)) i++;
          continue;
        }
      }
      items.push(this.objectResource(c, b.objects.get(n)));
      count++;
      last = n;
    }
    const out = { kind: 'storage#objects' };
    if (more && last !== null) out.nextPageToken = Buffer.from(last).toString('base64url');
    if (prefixes.length) out.prefixes = prefixes;
    if (items.length) out.items = items;
    c.send(200, out);
  }

  // ---- uploads -----------------------------------------------------------------------------
  uploadMeta(c, obj) {
    const meta = Object.assign({}, obj);
    if (!meta.contentType && c.req.headers['content-type']) meta.contentType = c.req.headers['content-type'];
    return meta;
  }
  media(c, B) {
    this.bucket(B);
    const name = c.query.get('name');
    if (!name) throw bad('Required', { reason: 'required', location: 'name', locationType: 'parameter' });
    const meta = this.uploadMeta(c, {});
    // objects.insert's contentEncoding query parameter (documented for uploadType=media) sets
    // the object's encoding; a Content-Encoding header is read the same way here
    const ce = c.query.get('contentEncoding') || c.req.headers['content-encoding'];
    if (ce) meta.contentEncoding = ce; // stored as-is: GCS does not undo gzip on upload
    c.send(200, this.objectResource(c, this.putObject(B, name, c.body, meta, c.query)));
  }
  multipart(c, B) {
    this.bucket(B);
    const ct = c.req.headers['content-type'] || '';
    const bm = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(ct);
    if (!/^multipart\/related/i.test(ct) || !bm) throw bad('Invalid multipart request: expected multipart/related with a boundary.');
    const parts = parseMultipart(c.body, bm[1] || bm[2]);
    if (parts.length !== 2) throw bad(`Invalid multipart request with ${parts.length} parts; expected metadata and media.`);
    let meta;
    try { meta = JSON.parse(parts[0].body.toString('utf8') || '{}'); } catch (e) { throw bad('Invalid JSON in the metadata part of the multipart request.'); }
    if (!meta || typeof meta !== 'object') throw bad('Invalid metadata part.');
    let data = parts[1].body;
    if (/base64/i.test(parts[1].headers['content-transfer-encoding'] || '')) data = Buffer.from(data.toString(), 'base64');
    if (!meta.contentType && parts[1].headers['content-type']) meta.contentType = parts[1].headers['content-type'];
    const name = c.query.get('name') || meta.name;
    if (!name) throw bad('Required', { reason: 'required', location: 'name', locationType: 'parameter' });
    c.send(200, this.objectResource(c, this.putObject(B, name, data, meta, c.query)));
  }

  resumableStart(c, B) {
    const b = this.bucket(B);
    let meta = {};
    if (c.body.length) {
      try { meta = JSON.parse(c.body.toString('utf8')); } catch (e) { throw bad('Invalid JSON payload received.'); }
    }
    if (!meta || typeof meta !== 'object') throw bad('Invalid metadata.');
    const name = c.query.get('name') || meta.name;
    if (!name) throw bad('Required', { reason: 'required', location: 'name', locationType: 'parameter' });
    this.checkName(name);
    this.checkPreconditions(c.query, b.objects.get(name)); // checked again at finalisation
    if (!meta.contentType && c.req.headers['x-upload-content-type']) meta.contentType = c.req.headers['x-upload-content-type'];
    const id = crypto.randomBytes(18).toString('base64url');
    const q = {};
    for (const k of ['ifGenerationMatch', 'ifGenerationNotMatch', 'ifMetagenerationMatch', 'ifMetagenerationNotMatch'])
      if (c.query.get(k) !== null) q[k] = c.query.get(k);
    const s = { id, bucket: B, name, meta, query: q, size: 0, done: null, created: Date.now() };
    const declared = c.req.headers['x-upload-content-length'];
    if (declared !== undefined && /^\d+$/.test(declared)) s.total = Number(declared);
    this.uploads.set(id, s);
    store.writeJson(path.join(this.upDir, id + '.json'), s);
    fs.writeFileSync(path.join(this.upDir, id + '.data'), '');
    const loc = `${c.base}/upload/storage/v1/b/${encodeURIComponent(B)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
    c.sendRaw(200, Buffer.alloc(0), { Location: loc, 'X-GUploader-UploadID': id, 'Content-Type': 'text/plain' });
  }
  session(c) {
    const s = this.uploads.get(c.query.get('upload_id'));
    if (!s) throw notFound('No such upload session (it may have expired or been completed long ago).');
    return s;
  }
  resumableCancel(c) {
    const s = this.session(c);
    this.uploads.delete(s.id);
    store.rm(path.join(this.upDir, s.id + '.json'));
    store.rm(path.join(this.upDir, s.id + '.data'));
    c.sendRaw(499, Buffer.alloc(0), {});
  }
  incomplete(c, s) {
    const h = {};
    if (s.size > 0) h.Range = `bytes=0-${s.size - 1}`;
    c.sendRaw(308, Buffer.alloc(0), h);
  }
  resumableChunk(c, B) {
    const s = this.session(c);
    if (s.bucket !== B) throw notFound('No such upload session.');
    if (s.done) return c.send(200, this.objectResource(c, s.done));
    const cr = c.req.headers['content-range'];
    let first; let total = s.total === undefined ? null : s.total; let last = null;
    if (!cr) {
      first = 0; last = c.body.length - 1; total = c.body.length; // a single PUT of everything
    } else {
      const m = /^bytes (\*|(\d+)-(\d+|\*))\/(\d+|\*)$/.exec(String(cr).trim());
      if (!m) throw bad(`Invalid Content-Range header: ${cr}`);
      if (m[4] !== '*') total = Number(m[4]);
      if (m[1] === '*') { // status query (or finalisation with no new bytes)
        if (c.body.length) throw bad('Content-Range "bytes */N" cannot carry data.');
        if (total !== null && s.size === total) return this.finish(c, s);
        return this.incomplete(c, s);
      }
      first = Number(m[2]);
      last = m[3] === '*' ? null : Number(m[3]);
      if (last !== null && last - first + 1 !== c.body.length)
        throw bad(`The Content-Range ${cr} does not match the ${c.body.length} bytes sent.`);
      // "a-*/*" streams the rest of an object of unknown size: this request ends it.
      if (last === null && total === null) total = first + c.body.length;
    }
    if (first > s.size)
      throw bad(`Invalid request. According to the Content-Range header, the upload offset is ${first} byte(s), which exceeds already uploaded size of ${s.size} byte(s).`);
    let data = c.body;
    if (first < s.size) data = data.subarray(Math.min(data.length, s.size - first)); // resent bytes
    const end = s.size + data.length;
    if (total !== null && end > total) throw bad(`Upload of ${end} bytes exceeds the declared size ${total}.`);
    const file = path.join(this.upDir, s.id + '.data');
    if (total !== null && end === total) {
      fs.appendFileSync(file, data);
      s.size = end;
      return this.finish(c, s);
    }
    // Intermediate chunk: only whole 256 KiB units are persisted; the client resumes from Range.
    const keep = Math.max(s.size, Math.floor(end / CHUNK) * CHUNK);
    if (keep > s.size) fs.appendFileSync(file, data.subarray(0, keep - s.size));
    s.size = keep;
    store.writeJson(path.join(this.upDir, s.id + '.json'), s);
    this.incomplete(c, s);
  }
  finish(c, s) {
    const data = fs.readFileSync(path.join(this.upDir, s.id + '.data'));
    const meta = Object.assign({}, s.meta);
    // The client may send its own checksums on the last chunk; GCS verifies them.
    const xh = c.req.headers['x-goog-hash'] || '';
    for (const part of String(xh).split(',')) {
      const [k, v] = part.trim().split(/=(.*)/s);
      if (k === 'crc32c' && v) meta.crc32c = v;
      if (k === 'md5' && v) meta.md5Hash = v;
    }
    const m = this.putObject(s.bucket, s.name, data, meta, new URLSearchParams(s.query));
    s.done = m;
    store.writeJson(path.join(this.upDir, s.id + '.json'), s);
    store.rm(path.join(this.upDir, s.id + '.data'));
    c.send(200, this.objectResource(c, m));
  }

  summary() {
    const out = {};
    for (const [n, b] of this.buckets) out[n] = b.objects.size;
    return { buckets: out };
  }
}

// Whether an object's contentEncoding is gzip, the only one GCS transcodes.
function isGzip(ce) { return typeof ce === 'string' && ce.trim().toLowerCase() === 'gzip'; }
// Whether an Accept-Encoding header lists gzip (or x-gzip) with a weight above zero.
function acceptsGzip(ae) {
  if (!ae) return false;
  return String(ae).split(',').some((part) => {
    const [coding, ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== 'x-gzip') return false;
    const q = params.find((p) => p.startsWith('q='));
    return !q || Number(q.slice(2)) > 0;
  });
}
// Cache-Control: no-transform in an object's metadata stops GCS from transcoding it.
function noTransform(cc) { return typeof cc === 'string' && /(^|,)\s*no-transform\s*(,|$)/i.test(cc); }

// Splits a multipart/related body into [{headers, body}] (header names lower-cased).
function parseMultipart(buf, boundary) {
  const delim = Buffer.from('--' + boundary);
  const parts = [];
  let pos = buf.indexOf(delim);
  if (pos < 0) return parts;
  for (;;) {
    pos += delim.length;
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) break; // closing "--boundary--"
    if (buf[pos] === 0x0d && buf[pos + 1] === 0x0a) pos += 2; else if (buf[pos] === 0x0a) pos += 1;
    const next = buf.indexOf(delim, pos);
    if (next < 0) break;
    let end = next;
    if (buf[end - 1] === 0x0a) end--;
    if (buf[end - 1] === 0x0d) end--;
    const part = buf.subarray(pos, end);
    let hEnd = part.indexOf('\r\n\r\n');
    let sep = 4;
    if (hEnd < 0) { hEnd = part.indexOf('\n\n'); sep = 2; }
    const headers = {};
    let body = part;
    if (hEnd >= 0) {
      for (const line of part.subarray(0, hEnd).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      body = part.subarray(hEnd + sep);
    }
    parts.push({ headers, body });
    pos = next;
  }
  return parts;
}

module.exports = { Gcs, parseMultipart, acceptsGzip };
