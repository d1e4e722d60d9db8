'use strict';
// A small reader for the BigQuery DDL the project keeps in ddl/*.sql:
//   CREATE [OR REPLACE] TABLE [IF NOT EXISTS] `[project.]dataset.table` (
//     col TYPE [NOT NULL] [OPTIONS(description="...")], ...)
//   [PARTITION BY DATE(col) | col | TIMESTAMP_TRUNC(col, DAY) | _PARTITIONDATE ...]
//   [CLUSTER BY a, b] [OPTIONS(description="...", ...)];
// Types: scalars (with optional parameters like STRING(10)), ARRAY<...>, STRUCT<name TYPE ...>.
// Produces tables.insert bodies, so the DDL and the REST path share one code path.

function tokenize(sql) {
  const toks = [];
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i];
    if (/\s/.test(ch)) { i++; continue; }
    if (sql.startsWith('--', i) || ch === '#') { while (i < sql.length && sql[i] !== '\n') i++; continue; }
    if (sql.startsWith('/*', i)) { const e = sql.indexOf('*/', i + 2); i = e < 0 ? sql.length : e + 2; continue; }
    if (ch === '`') {
      const e = sql.indexOf('`', i + 1);
      if (e < 0) throw new Error('unterminated backquoted name');
      toks.push({ t: 'id', v: sql.slice(i + 1, e), q: true }); i = e + 1; continue;
    }
    if (ch === '"' || ch === "'") {
      const triple = sql.startsWith(ch.repeat(3), i);
      const q = triple ? ch.repeat(3) : ch;
      let j = i + q.length; let s = '';
      for (;;) {
        if (j >= sql.length) throw new Error('unterminated string');
        if (sql[j] === '\\') {
          const n = sql[j + 1];
          s += n === 'n' ? '\n' : n === 't' ? '\t' : n; j += 2; continue;
        }
        if (sql.startsWith(q, j)) { j += q.length; break; }
        s += sql[j++];
      }
      toks.push({ t: 'str', v: s }); i = j; continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*|^-?\d+(?:\.\d+)?/.exec(sql.slice(i, i + 256));
    if (m) { toks.push({ t: /^[-\d]/.test(m[0]) ? 'num' : 'id', v: m[0] }); i += m[0].length; continue; }
    toks.push({ t: 'p', v: ch }); i++;
  }
  return toks;
}

class Parser {
  constructor(toks) { this.toks = toks; this.i = 0; }
  peek(o = 0) { return this.toks[this.i + o]; }
  isKw(w, o = 0) { const t = this.peek(o); return t && t.t === 'id' && !t.q && t.v.toUpperCase() === w; }
  isP(c) { const t = this.peek(); return t && t.t === 'p' && t.v === c; }
  next() { const t = this.toks[this.i++]; if (!t) throw new Error('unexpected end of DDL'); return t; }
  kw(w) { if (!this.isKw(w)) throw new Error(`expected ${w} near ${this.where()}`); this.i++; }
  p(c) { if (!this.isP(c)) throw new Error(`expected '${c}' near ${this.where()}`); this.i++; }
  id() { const t = this.next(); if (t.t !== 'id') throw new Error(`expected a name near ${this.where()}`); return t.v; }
  where() { return this.toks.slice(this.i, this.i + 5).map((t) => t.v).join(' ') || 'end'; }

  // `a.b.c`, a.b, or `a`.`b`
  qualifiedName() {
    const parts = [];
    for (;;) {
      parts.push(...this.id().split('.'));
      if (!this.isP('.')) break;
      this.i++;
    }
    return parts;
  }

  // OPTIONS(k=v, ...) → object
  options() {
    this.kw('OPTIONS'); this.p('(');
    const o = {};
    while (!this.isP(')')) {
      const k = this.id().toLowerCase(); this.p('=');
      o[k] = this.value();
      if (this.isP(',')) this.i++;
    }
    this.p(')');
    return o;
  }
  value() {
    const t = this.next();
    if (t.t === 'str' || t.t === 'num') return t.t === 'num' ? Number(t.v) : t.v;
    if (t.t === 'id') {
      const u = t.v.toUpperCase();
      if (u === 'TRUE' || u === 'FALSE') return u === 'TRUE';
      if (u === 'NULL') return null;
      if (this.isP('(')) { this.skipParens(); return null; } // e.g. TIMESTAMP "…" or functions
      if (this.peek() && this.peek().t === 'str') return this.next().v; // typed literal
      return t.v;
    }
    if (t.v === '[') { const arr = []; while (!this.isP(']')) { arr.push(this.value()); if (this.isP(',')) this.i++; } this.p(']'); return arr; }
    throw new Error(`bad option value near ${this.where()}`);
  }
  skipParens() {
    this.p('(');
    let depth = 1;
    while (depth) { const t = this.next(); if (t.t === 'p' && t.v === '(') depth++; else if (t.t === 'p' && t.v === ')') depth--; }
  }

  // Returns {type, fields?, maxLength?, repeated}
  type() {
    const name = this.id().toUpperCase();
    if (name === 'ARRAY') {
      this.p('<'); const inner = this.type(); this.closeAngle();
      if (inner.repeated) throw new Error('ARRAY of ARRAY is not allowed');
      return Object.assign(inner, { repeated: true });
    }
    if (name === 'STRUCT' || name === 'RECORD') {
      this.p('<');
      const fields = [];
      while (!this.isAngleClose()) {
        fields.push(this.column());
        if (this.isP(',')) this.i++;
      }
      this.closeAngle();
      return { type: 'RECORD', fields };
    }
    const out = { type: name };
    if (this.isP('(')) { // STRING(10), NUMERIC(10, 2)
      this.i++;
      const a = Number(this.next().v);
      let b;
      if (this.isP(',')) { this.i++; b = Number(this.next().v); }
      this.p(')');
      if (name === 'STRING' || name === 'BYTES') out.maxLength = String(a);
      else { out.precision = String(a); if (b !== undefined) out.scale = String(b); }
    }
    if (name === 'RANGE' && this.isP('<')) { this.i++; out.rangeElementType = { type: this.id().toUpperCase() }; this.closeAngle(); }
    return out;
  }
  // `>>` arrives as two '>' tokens from the tokenizer, so nested closes need no special case.
  isAngleClose() { return this.isP('>'); }
  closeAngle() { this.p('>'); }

  column() {
    const name = this.id();
    const t = this.type();
    const f = { name, type: t.type, mode: t.repeated ? 'REPEATED' : 'NULLABLE' };
    if (t.fields) f.fields = t.fields;
    for (const k of ['maxLength', 'precision', 'scale', 'rangeElementType']) if (t[k] !== undefined) f[k] = t[k];
    for (;;) {
      if (this.isKw('NOT') && this.isKw('NULL', 1)) { this.i += 2; if (f.mode === 'REPEATED') throw new Error(`${name}: ARRAY cannot be NOT NULL`); f.mode = 'REQUIRED'; continue; }
      if (this.isKw('OPTIONS')) { const o = this.options(); if (o.description !== undefined) f.description = o.description; continue; }
      if (this.isKw('DEFAULT')) { this.i++; const st = this.i; this.value(); f.defaultValueExpression = this.toks.slice(st, this.i).map((x) => x.v).join(' '); continue; }
      if (this.isKw('COLLATE')) { this.i++; f.collation = this.next().v; continue; }
      break;
    }
    return f;
  }

  partition(fields) {
    // DATE(col), col, TIMESTAMP_TRUNC(col, UNIT), DATE_TRUNC(col, UNIT), DATETIME_TRUNC(...), _PARTITIONDATE
    const a = this.id();
    const up = a.toUpperCase();
    if (up === '_PARTITIONDATE' || up === '_PARTITIONTIME') return { type: 'DAY' };
    if (!this.isP('(')) return { type: 'DAY', field: a };
    this.p('(');
    const col = this.id();
    let unit = 'DAY';
    if (this.isP(',')) { this.i++; unit = this.id().toUpperCase(); }
    this.p(')');
    if (col.toUpperCase() === '_PARTITIONTIME') return { type: unit };
    if (!fields.some((f) => f.name.toLowerCase() === col.toLowerCase())) throw new Error(`PARTITION BY column ${col} is not in the table`);
    return { type: unit, field: col };
  }

  // One CREATE TABLE statement → {project?, dataset, table, ifNotExists, body}
  createTable() {
    this.kw('CREATE');
    let replace = false;
    if (this.isKw('OR')) { this.i++; this.kw('REPLACE'); replace = true; }
    if (this.isKw('TEMP') || this.isKw('TEMPORARY')) throw new Error('temporary tables are not supported');
    this.kw('TABLE');
    let ifNotExists = false;
    if (this.isKw('IF')) { this.i++; this.kw('NOT'); this.kw('EXISTS'); ifNotExists = true; }
    const parts = this.qualifiedName();
    if (parts.length < 2 || parts.length > 3) throw new Error(`table name must be dataset.table or project.dataset.table: ${parts.join('.')}`);
    const [project, dataset, table] = parts.length === 3 ? parts : [undefined, ...parts];
    this.p('(');
    const fields = [];
    while (!this.isP(')')) {
      fields.push(this.column());
      if (this.isP(',')) this.i++; else if (!this.isP(')')) throw new Error(`expected ',' or ')' near ${this.where()}`);
    }
    this.p(')');
    const body = { tableReference: { projectId: project, datasetId: dataset, tableId: table }, schema: { fields } };
    while (this.peek() && !this.isP(';')) {
      if (this.isKw('PARTITION')) { this.i++; this.kw('BY'); body.timePartitioning = this.partition(fields); continue; }
      if (this.isKw('CLUSTER')) {
        this.i++; this.kw('BY');
        const cols = [this.id()];
        while (this.isP(',')) { this.i++; cols.push(this.id()); }
        body.clustering = { fields: cols };
        continue;
      }
      if (this.isKw('OPTIONS')) {
        const o = this.options();
        if (o.description !== undefined) body.description = o.description;
        if (o.friendly_name !== undefined) body.friendlyName = o.friendly_name;
        if (o.labels) body.labels = Object.fromEntries(o.labels.filter(Array.isArray));
        if (o.partition_expiration_days !== undefined && body.timePartitioning)
          body.timePartitioning.expirationMs = String(Math.round(o.partition_expiration_days * 86400000));
        if (o.require_partition_filter !== undefined) body.requirePartitionFilter = !!o.require_partition_filter;
        continue;
      }
      throw new Error(`unexpected ${this.where()}`);
    }
    if (this.isP(';')) this.i++;
    return { project, dataset, table, ifNotExists, replace, body };
  }
}

// Parses a whole file (one or more CREATE TABLE statements). Throws Error with a message
// naming the place on bad input.
function parseDdl(sql) {
  const p = new Parser(tokenize(sql));
  const out = [];
  while (p.peek()) {
    if (p.isP(';')) { p.i++; continue; }
    out.push(p.createTable());
  }
  return out;
}

module.exports = { parseDdl, tokenize };
