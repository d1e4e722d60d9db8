'use strict';
// BigQuery v2: datasets, tables, tabledata.insertAll (streaming insert) and tabledata.list.
//
// Layout under DIR/bigquery/P/D/: _dataset.json (the dataset resource), T.table.json (the
// table resource with its schema), T.ndjson (one stored row per line, see schema.js).

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { ApiError, bad, notFound, checkProject } = require('./errors');
const store = require('./store');
const schema = require('./schema');
const { parseDdl } = require('./ddl');
const jsonExact = require('./json_exact');

const MAX_REQUEST_BYTES = 10 * 1024 * 1024;
const MAX_ROWS = 50000;
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });
const DATASET_RE = /^[A-Za-z0-9_]{1,1024}$/;
const TABLE_RE = /^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]{1,1024}$/u;

const etag = () => crypto.randomBytes(12).toString('base64');
const nowMs = () => String(Date.now());

class Table {
  constructor(bq, dir, r) {
    this.bq = bq;
    this.dir = dir;
    this.r = r;
    this.fields = (r.schema && r.schema.fields) || [];
    this.validate = schema.compileRecord(this.fields);
    // Rows live only in T.ndjson (holding millions of row strings made V8's GC the
    // bottleneck). `offsets` indexes row starts for tabledata.list; it is built lazily by
    // scanning the file, so inserts only count rows and bytes.
    this.numRows = 0;
    this.bytes = 0;
    this.offsets = [];
    this.indexed = 0;          // bytes of the file covered by `offsets`
    this.dedup = new Map();    // insertId -> ms when first seen (Map keeps time order)
    this.log = null;
  }
  get id() { return this.r.tableReference.tableId; }
  file(ext) { return path.join(this.dir, this.id + ext); }
  open() {
    const f = this.file('.ndjson');
    if (fs.existsSync(f)) {
      this.bytes = fs.statSync(f).size;
      this.index();
      // A crash can leave a torn last line: cut it off so the file holds whole rows only.
      if (this.indexed !== this.bytes) { fs.truncateSync(f, this.indexed); this.bytes = this.indexed; }
      this.numRows = this.offsets.length;
    }
    this.log = new store.AppendLog(f);
  }
  // Extends `offsets` over the rows written since the last call.
  index() {
    const end = this.bytes;
    if (this.indexed >= end) return;
    const fd = fs.openSync(this.file('.ndjson'), 'r');
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      let pos = this.indexed;
      let rowStart = this.indexed;
      while (pos < end) {
        const n = fs.readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
        if (n <= 0) break;
        let i = buf.indexOf(10, 0);
        while (i >= 0 && i < n) {
          this.offsets.push(rowStart);
          rowStart = pos + i + 1;
          i = buf.indexOf(10, i + 1);
        }
        pos += n;
      }
      this.indexed = rowStart;
    } finally { fs.closeSync(fd); }
  }
  // Stored rows [start, end) as parsed objects; the caller waited for pending writes.
  readRows(start, end) {
    if (end <= start) return [];
    this.index();
    const from = this.offsets[start];
    const to = end < this.offsets.length ? this.offsets[end] : this.indexed;
    const buf = Buffer.alloc(to - from);
    const fd = fs.openSync(this.file('.ndjson'), 'r');
    try { fs.readSync(fd, buf, 0, buf.length, from); } finally { fs.closeSync(fd); }
    const lines = buf.toString('utf8').split('\n');
    lines.pop(); // after the final newline
    return lines.map((l) => JSON.parse(l));
  }
  save() { store.writeJson(this.file('.table.json'), this.r); }
  close() { if (this.log) this.log.close(); }
  // Forgets insertIds older than the window (or beyond the size cap: de-duplication is
  // best-effort on the service too); cheap because the Map is in time order.
  pruneDedup(now) {
    const cutoff = now - this.bq.dedupMs;
    for (const [k, t] of this.dedup) {
      if (t >= cutoff && this.dedup.size <= this.bq.dedupMax) break;
      this.dedup.delete(k);
    }
  }
}

class BigQuery {
  constructor(opts, faults) {
    this.dir = path.join(opts.data, 'bigquery');
    this.dedupMs = (opts.dedupSeconds || 60) * 1000;
    this.dedupMax = opts.dedupMax || 2000000;
    this.faults = faults;
    this.datasets = new Map(); // "P:D" -> {r, dir, tables: Map}
    this.load();
  }

  load() {
    for (const p of store.listDir(this.dir)) {
      for (const d of store.listDir(path.join(this.dir, p))) {
        const dir = path.join(this.dir, p, d);
        const r = store.readJson(path.join(dir, '_dataset.json'));
        if (!r) continue;
        const ds = { r, dir, tables: new Map() };
        this.datasets.set(`${p}:${d}`, ds);
        for (const f of store.listDir(dir)) {
          if (!f.endsWith('.table.json')) continue;
          const tr = store.readJson(path.join(dir, f));
          if (!tr || !tr.tableReference) continue;
          const t = new Table(this, dir, tr);
          t.open();
          ds.tables.set(t.id, t);
        }
      }
    }
  }

  // segs: decoded segments after /bigquery/v2 (or bare): projects/P/datasets/...
  route(method, segs) {
    if (segs[0] !== 'projects' || !segs[1]) return null;
    const p = segs[1];
    if (segs[2] !== 'datasets') return null;
    const n = segs.length;
    if (n === 3) {
      if (method === 'POST') return { op: 'bigquery.datasets.insert', fn: (c) => this.insertDataset(c, p) };
      if (method === 'GET') return { op: 'bigquery.datasets.list', fn: (c) => this.listDatasets(c, p) };
      return null;
    }
    const d = segs[3];
    if (n === 4) {
      if (method === 'GET') return { op: 'bigquery.datasets.get', fn: (c) => c.send(200, this.dsResource(c, this.dataset(p, d))) };
      if (method === 'DELETE') return { op: 'bigquery.datasets.delete', fn: (c) => this.deleteDataset(c, p, d) };
      return null;
    }
    if (segs[4] !== 'tables') return null;
    if (n === 5) {
      if (method === 'POST') return { op: 'bigquery.tables.insert', fn: (c) => this.insertTable(c, p, d) };
      if (method === 'GET') return { op: 'bigquery.tables.list', fn: (c) => this.listTables(c, p, d) };
      return null;
    }
    const t = segs[5];
    if (n === 6) {
      if (method === 'GET') return { op: 'bigquery.tables.get', fn: (c) => c.send(200, this.tableResource(c, this.table(p, d, t))) };
      if (method === 'DELETE') return { op: 'bigquery.tables.delete', fn: (c) => this.deleteTable(c, p, d, t) };
      if (method === 'PATCH') return { op: 'bigquery.tables.patch', fn: (c) => this.patchTable(c, p, d, t, false) };
      if (method === 'PUT') return { op: 'bigquery.tables.update', fn: (c) => this.patchTable(c, p, d, t, true) };
      return null;
    }
    if (n === 7 && segs[6] === 'insertAll' && method === 'POST') return { op: 'bigquery.tabledata.insertAll', fn: (c) => this.insertAll(c, p, d, t) };
    if (n === 7 && segs[6] === 'data' && method === 'GET') return { op: 'bigquery.tabledata.list', fn: (c) => this.list(c, p, d, t) };
    return null;
  }

  dataset(p, d) {
    const ds = this.datasets.get(`${p}:${d}`);
    if (!ds) throw notFound(`Not found: Dataset ${p}:${d}`);
    return ds;
  }
  table(p, d, t) {
    const ds = this.datasets.get(`${p}:${d}`);
    const tb = ds && ds.tables.get(t.split('$')[0]); // a $YYYYMMDD decorator names a partition
    if (!tb) throw notFound(`Not found: Table ${p}:${d}.${t}`);
    return tb;
  }

  // ---- datasets ----------------------------------------------------------------------------
  createDataset(p, body) {
    checkProject(p);
    const ref = body.datasetReference || {};
    const d = ref.datasetId;
    if (typeof d !== 'string' || !DATASET_RE.test(d))
      throw bad(`Invalid dataset ID "${d}". Dataset IDs must be alphanumeric (plus underscores) and must be at most 1024 characters long.`);
    const key = `${p}:${d}`;
    if (this.datasets.has(key)) throw new ApiError(409, `Already Exists: Dataset ${key}`, { reason: 'duplicate' });
    const r = {
      kind: 'bigquery#dataset', etag: etag(), id: key,
      datasetReference: { datasetId: d, projectId: p },
      location: body.location || 'US', creationTime: nowMs(), lastModifiedTime: nowMs(), type: 'DEFAULT',
    };
    for (const k of ['description', 'friendlyName', 'labels', 'defaultTableExpirationMs', 'defaultPartitionExpirationMs', 'access'])
      if (body[k] !== undefined) r[k] = body[k];
    const dir = path.join(this.dir, p, d);
    store.mkdirp(dir);
    store.writeJson(path.join(dir, '_dataset.json'), r);
    const ds = { r, dir, tables: new Map() };
    this.datasets.set(key, ds);
    return ds;
  }
  dsResource(c, ds) {
    const { projectId, datasetId } = ds.r.datasetReference;
    return Object.assign({}, ds.r, { selfLink: `${c.base}/bigquery/v2/projects/${projectId}/datasets/${datasetId}` });
  }
  insertDataset(c, p) {
    const body = c.json();
    c.send(200, this.dsResource(c, this.createDataset(p, body)));
  }
  listDatasets(c, p) {
    const list = [...this.datasets.values()].filter((ds) => ds.r.datasetReference.projectId === p)
      .map((ds) => ({ kind: 'bigquery#dataset', id: ds.r.id, datasetReference: ds.r.datasetReference, location: ds.r.location }));
    const out = { kind: 'bigquery#datasetList', etag: etag() };
    if (list.length) out.datasets = list;
    c.send(200, out);
  }
  deleteDataset(c, p, d) {
    const ds = this.dataset(p, d);
    if (ds.tables.size && c.query.get('deleteContents') !== 'true')
      throw new ApiError(400, `Dataset ${p}:${d} is still in use`, { reason: 'resourceInUse' });
    for (const t of ds.tables.values()) t.close();
    this.datasets.delete(`${p}:${d}`);
    store.rm(ds.dir);
    c.sendEmpty(204);
  }

  // ---- tables ------------------------------------------------------------------------------
  // Creates a table from a tables.insert body; shared by the REST call and the DDL reader.
  createTable(p, d, body) {
    const ds = this.dataset(p, d);
    const ref = body.tableReference || {};
    const t = ref.tableId;
    if (typeof t !== 'string' || !TABLE_RE.test(t)) throw bad(`Invalid table ID "${t}".`);
    if (ds.tables.has(t)) throw new ApiError(409, `Already Exists: Table ${p}:${d}.${t}`, { reason: 'duplicate' });
    const fields = body.schema && body.schema.fields ? schema.normalizeFields(body.schema.fields) : [];
    const r = {
      kind: 'bigquery#table', etag: etag(), id: `${p}:${d}.${t}`,
      tableReference: { projectId: p, datasetId: d, tableId: t },
      schema: { fields },
      creationTime: nowMs(), lastModifiedTime: nowMs(), type: 'TABLE', location: ds.r.location,
    };
    if (body.timePartitioning) r.timePartitioning = this.checkPartitioning(body.timePartitioning, fields);
    if (body.clustering) r.clustering = this.checkClustering(body.clustering, fields);
    for (const k of ['description', 'friendlyName', 'labels', 'expirationTime', 'requirePartitionFilter'])
      if (body[k] !== undefined) r[k] = body[k];
    const tb = new Table(this, ds.dir, r);
    tb.save();
    tb.open();
    ds.tables.set(t, tb);
    return tb;
  }
  checkPartitioning(tp, fields) {
    const type = String(tp.type || '').toUpperCase();
    if (!['DAY', 'HOUR', 'MONTH', 'YEAR'].includes(type)) throw bad(`Invalid value for timePartitioning.type: ${tp.type}`);
    const out = { type };
    if (tp.field) {
      const f = fields.find((x) => x.name.toLowerCase() === String(tp.field).toLowerCase());
      if (!f || !['TIMESTAMP', 'DATE', 'DATETIME'].includes(f.type) || f.mode === 'REPEATED')
        throw bad(`The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME. The type found is: ${f ? f.type : 'missing'}.`);
      out.field = f.name;
    }
    if (tp.expirationMs !== undefined) out.expirationMs = String(tp.expirationMs);
    return out;
  }
  checkClustering(cl, fields) {
    const names = cl.fields || [];
    if (!Array.isArray(names) || names.length === 0 || names.length > 4)
      throw bad('Clustering fields must be a list of 1 to 4 top-level columns.');
    for (const n of names) {
      const f = fields.find((x) => x.name.toLowerCase() === String(n).toLowerCase());
      if (!f) throw bad(`The field specified for clustering cannot be found in the schema. Invalid field: ${n}.`);
      if (f.mode === 'REPEATED' || ['RECORD', 'JSON', 'FLOAT'].includes(f.type))
        throw bad(`Field ${n} is of type ${f.mode === 'REPEATED' ? 'ARRAY' : f.type} which is not supported for clustering.`);
    }
    return { fields: names.slice() };
  }
  tableResource(c, tb) {
    const { projectId, datasetId, tableId } = tb.r.tableReference;
    return Object.assign({}, tb.r, {
      selfLink: `${c.base}/bigquery/v2/projects/${projectId}/datasets/${datasetId}/tables/${encodeURIComponent(tableId)}`,
      numRows: String(tb.numRows), numBytes: String(tb.bytes), numLongTermBytes: '0',
    });
  }
  insertTable(c, p, d) {
    const body = c.json();
    c.send(200, this.tableResource(c, this.createTable(p, d, body)));
  }
  // tables.patch (PATCH: the keys given replace theirs) and tables.update (PUT: the resource
  // given replaces the table's updatable keys, an absent one is removed). A schema may only
  // grow as the service allows (schema.evolveFields): new NULLABLE or REPEATED columns and
  // RECORD fields, REQUIRED relaxed to NULLABLE; the rest is a 400 and nothing changes.
  patchTable(c, p, d, t, replace) {
    const tb = this.table(p, d, t);
    const body = c.json();
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw bad('Invalid table resource.');
    const ref = body.tableReference;
    if (ref && ((ref.tableId && ref.tableId !== tb.id) || (ref.datasetId && ref.datasetId !== d) || (ref.projectId && ref.projectId !== p)))
      throw bad(`Table reference ${ref.projectId}:${ref.datasetId}.${ref.tableId} does not match the table ${tb.r.id}.`);
    const r = Object.assign({}, tb.r);
    let fields = tb.fields;
    if (body.schema && body.schema.fields) {
      fields = schema.normalizeFields(body.schema.fields);
      schema.evolveFields(tb.fields, fields, `Provided Schema does not match Table ${tb.r.id}. `);
      r.schema = { fields };
    }
    if (body.timePartitioning) {
      const tp = this.checkPartitioning(body.timePartitioning, fields);
      const old = r.timePartitioning || {};
      if (tp.type !== old.type || (tp.field || '') !== (old.field || ''))
        throw bad('Cannot change partitioning spec of an existing table: only expirationMs may change.');
      r.timePartitioning = tp;
    }
    if (body.clustering) r.clustering = this.checkClustering(body.clustering, fields);
    for (const k of ['description', 'friendlyName', 'labels', 'expirationTime', 'requirePartitionFilter']) {
      if (body[k] !== undefined && body[k] !== null) r[k] = body[k];
      else if (replace || body[k] === null) delete r[k];
    }
    r.etag = etag();
    r.lastModifiedTime = nowMs();
    tb.r = r;
    tb.fields = fields;
    tb.validate = schema.compileRecord(fields);
    tb.save();
    c.send(200, this.tableResource(c, tb));
  }
  listTables(c, p, d) {
    const ds = this.dataset(p, d);
    const tables = [...ds.tables.values()].map((t) => ({
      kind: 'bigquery#table', id: t.r.id, tableReference: t.r.tableReference, type: 'TABLE',
      timePartitioning: t.r.timePartitioning, clustering: t.r.clustering, creationTime: t.r.creationTime,
    }));
    const out = { kind: 'bigquery#tableList', etag: etag(), totalItems: tables.length };
    if (tables.length) out.tables = tables;
    c.send(200, out);
  }
  deleteTable(c, p, d, t) {
    const tb = this.table(p, d, t);
    tb.close();
    this.datasets.get(`${p}:${d}`).tables.delete(tb.id);
    store.rm(tb.file('.table.json'));
    store.rm(tb.file('.ndjson'));
    c.sendEmpty(204);
  }

  // Creates tables from DDL text. Returns the list of "P:D.T" created (existing ones with
  // IF NOT EXISTS are skipped). `dataset` overrides the dataset named in the DDL.
  applyDdl(sql, project, dataset) {
    const done = [];
    for (const st of parseDdl(sql)) {
      const p = project || st.project;
      const d = dataset || st.dataset;
      if (!p) throw new Error(`no project for table ${st.table}: pass --project`);
      if (!this.datasets.has(`${p}:${d}`)) this.createDataset(p, { datasetReference: { datasetId: d } });
      const ds = this.datasets.get(`${p}:${d}`);
      if (ds.tables.has(st.table)) {
        if (st.ifNotExists) continue;
        if (!st.replace) throw new Error(`Already Exists: Table ${p}:${d}.${st.table}`);
        ds.tables.get(st.table).close();
        ds.tables.delete(st.table);
      }
      st.body.tableReference = { projectId: p, datasetId: d, tableId: st.table };
      this.createTable(p, d, st.body);
      done.push(`${p}:${d}.${st.table}`);
    }
    return done;
  }

  // ---- tabledata.insertAll -----------------------------------------------------------------
  insertAll(c, p, d, t) {
    if (c.body.length > MAX_REQUEST_BYTES)
      throw bad(`Request payload size exceeds the limit: ${MAX_REQUEST_BYTES} bytes.`);
    // The service refuses a body that is not UTF-8 as a whole (400); Node would replace the bad
    // bytes with U+FFFD silently, hiding them from the tests.
    try { UTF8_STRICT.decode(c.body); } catch (e) { throw bad('Invalid JSON payload received. Invalid UTF-8 in the request body.'); }
    let tb = this.table(p, d, t);
    // INT64 values past 2^53 arrive as BigInt, exact (JSON.parse would round them)
    const body = c.json(true, jsonExact.parse);
    const rows = body.rows;
    if (!Array.isArray(rows) || rows.length === 0) throw bad('No rows present in the request.');
    if (rows.length > MAX_ROWS) throw bad(`too many rows present in the request, limit: ${MAX_ROWS} row count: ${rows.length}.`);
    if (body.templateSuffix) {
      // templateSuffix creates T<suffix> with T's schema on first use.
      const name = tb.id + body.templateSuffix;
      const ds = this.datasets.get(`${p}:${d}`);
      tb = ds.tables.get(name) || this.createTable(p, d, { tableReference: { tableId: name }, schema: tb.r.schema });
    }
    const reject = this.faults ? this.faults.rowRejector(c) : null;
    const ctx = { ignoreUnknown: !!body.ignoreUnknownValues, msg: '', loc: '' };
    const stored = new Array(rows.length);
    const errors = [];
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      const json = r && r.json;
      if (!json || typeof json !== 'object' || Array.isArray(json)) {
        errors.push({ index: i, errors: [{ reason: 'invalid', location: '', debugInfo: '', message: 'Missing or invalid row json: each row needs a "json" object.' }] });
        continue;
      }
      if (reject) {
        const why = reject(i, json);
        if (why) { errors.push({ index: i, errors: [why] }); continue; }
      }
      const out = tb.validate(json, ctx, '');
      if (out === schema.FAIL) {
        errors.push({ index: i, errors: [{ reason: 'invalid', location: ctx.loc, debugInfo: '', message: ctx.msg }] });
        continue;
      }
      stored[i] = out;
    }
    if (errors.length && !body.skipInvalidRows) {
      // All or nothing: the good rows are reported as `stopped` and nothing is written.
      const bad = new Set(errors.map((e) => e.index));
      for (let i = 0; i < rows.length; i++) {
        if (!bad.has(i)) errors.push({ index: i, errors: [{ reason: 'stopped', location: '', debugInfo: '', message: '' }] });
      }
      errors.sort((a, b) => a.index - b.index);
      return c.send(200, { kind: 'bigquery#tableDataInsertAllResponse', insertErrors: errors });
    }
    const reply = { kind: 'bigquery#tableDataInsertAllResponse' };
    if (errors.length) reply.insertErrors = errors;
    return this.write(tb, rows, stored).then(() => c.send(200, reply));
  }

  // Appends the valid rows (less de-duplicated ones); resolves when they are in T.ndjson.
  write(tb, rows, stored) {
    const now = Date.now();
    tb.pruneDedup(now);
    const lines = [];
    for (let i = 0; i < stored.length; i++) {
      const out = stored[i];
      if (out === undefined) continue;
      const id = rows[i].insertId;
      if (id !== undefined && id !== null && id !== '') {
        // Best-effort de-duplication, as the service: a repeat within the window is dropped.
        if (tb.dedup.has(id)) continue;
        tb.dedup.set(id, now);
      }
      lines.push(JSON.stringify(out));
    }
    if (!lines.length) return Promise.resolve();
    lines.push('');
    const buf = Buffer.from(lines.join('\n'));
    tb.numRows += lines.length - 1;
    tb.bytes += buf.length;
    return tb.log.write(buf);
  }

  // ---- tabledata.list ----------------------------------------------------------------------
  async list(c, p, d, t) {
    const tb = this.table(p, d, t);
    // Rows counted now may still be on their way to the file: wait until they are in it.
    const n = tb.numRows;
    await tb.log.drain();
    const q = c.query;
    let start = 0;
    const tok = q.get('pageToken');
    if (tok) {
      start = Number(Buffer.from(tok, 'base64url').toString());
      if (!Number.isInteger(start) || start < 0) throw bad('Invalid page token.');
    } else if (q.get('startIndex')) {
      start = Number(q.get('startIndex'));
      if (!Number.isInteger(start) || start < 0) throw bad(`Invalid value for startIndex: ${q.get('startIndex')}`);
    }
    const max = q.get('maxResults') ? Number(q.get('maxResults')) : 100000;
    if (!Number.isInteger(max) || max < 0) throw bad(`Invalid value for maxResults: ${q.get('maxResults')}`);
    let fmt = 'FLOAT64';
    const tf = q.get('formatOptions.timestampOutputFormat');
    if (q.get('formatOptions.useInt64Timestamp') === 'true') fmt = 'INT64';
    if (tf && tf !== 'TIMESTAMP_OUTPUT_FORMAT_UNSPECIFIED') {
      if (!['FLOAT64', 'INT64', 'ISO8601_STRING'].includes(tf)) throw bad(`Invalid value for formatOptions.timestampOutputFormat: ${tf}`);
      fmt = tf;
    }
    let fields = tb.fields;
    const sel = q.get('selectedFields');
    if (sel) {
      const want = new Set(sel.split(',').map((s) => s.trim().split('.')[0].toLowerCase()));
      fields = fields.filter((f) => want.has(f.name.toLowerCase()));
    }
    const end = Math.min(n, start + max);
    const out = { kind: 'bigquery#tableDataList', etag: etag(), totalRows: String(n) };
    if (end > start) out.rows = tb.readRows(start, end).map((row) => schema.formatRow(fields, row, fmt));
    if (end < n) out.pageToken = Buffer.from(String(end)).toString('base64url');
    c.send(200, out);
  }

  summary() {
    const out = {};
    for (const ds of this.datasets.values()) for (const t of ds.tables.values()) out[t.r.id] = t.numRows;
    return { tables: out };
  }
  close() { for (const ds of this.datasets.values()) for (const t of ds.tables.values()) t.close(); }
}

module.exports = { BigQuery };
