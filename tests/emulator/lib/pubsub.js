'use strict';
// Pub/Sub v1 REST: topics, subscriptions, publish, pull, acknowledge, modifyAckDeadline.
//
// Each subscription keeps its own copy of every message published after it was created (as
// the service does), in memory for speed and in an append-only journal under
// DIR/pubsub/P/subscriptions/S.messages.ndjson so unacked messages survive a restart:
//   {"m":{...PubsubMessage...}}   a message was published to this subscription
//   {"a":"<messageId>"}           it was acknowledged
// The journal is compacted (rewritten with only unacked messages) at load and when mostly acks.

const path = require('path');
const fs = require('fs');
const { ApiError, bad, notFound, checkProject } = require('./errors');
const store = require('./store');

const NAME_RE = /^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$/;
const B64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;
const MAX_PUBLISH_BYTES = 10 * 1000 * 1000;
const MAX_ACK_BYTES = 512 * 1024;
const MAX_PULL = 1000; // the service may return fewer than asked; it never returns more
const M_PRE = Buffer.from('{"m":');
const M_POST = Buffer.from('}\n');

// publishTime with nanosecond digits, strictly increasing so ordering is visible in tests.
let lastNs = 0n;
function nowRfc3339Ns() {
  let ns = BigInt(Date.now()) * 1000000n + (process.hrtime.bigint() % 1000000n);
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  const ms = Number(ns / 1000000n);
  const iso = new Date(ms).toISOString(); // 2024-01-02T03:04:05.678Z
  const frac = (ns % 1000000000n).toString().padStart(9, '0');
  return iso.slice(0, 19) + '.' + frac + 'Z';
}

function parseDuration(s, field) {
  if (s === undefined || s === null) return undefined;
  const m = /^(\d+)(?:\.(\d{1,9}))?s$/.exec(String(s));
  if (!m) throw bad(`Invalid value for ${field}: "${s}" is not a duration like "600s".`);
  return Number(m[1]) + (m[2] ? Number('0.' + m[2]) : 0);
}

class Sub {
  constructor(ps, resource) {
    this.ps = ps;
    this.r = resource;
    this.ready = [];       // recs eligible for delivery, FIFO; `head` avoids O(n) shifts
    this.head = 0;
    this.out = new Map();  // messageId -> rec currently leased to a client
    this.live = new Map(); // messageId -> rec, every unacked message (ready or leased)
    this.waiters = new Set();
    this.minDeadline = Infinity;
    this.journalLines = 0;
    this.log = null;
  }
  get deadlineMs() { return (this.r.ackDeadlineSeconds || 10) * 1000; }
  enqueue(rec) { this.ready.push(rec); }
  // Returns up to n deliverable recs, skipping ones acked while queued.
  take(n) {
    const got = [];
    while (got.length < n && this.head < this.ready.length) {
      const rec = this.ready[this.head];
      this.ready[this.head++] = undefined;
      if (rec.acked || this.out.has(rec.id)) continue;
      got.push(rec);
    }
    if (this.head > 4096 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    return got;
  }
  backlog() { return this.live.size - this.out.size; }
  // Lets waiting pulls take what just became ready. A failing waiter must not fail the
  // publish (or sweep) that woke it.
  wake() {
    for (const w of this.waiters) {
      try { w(); } catch (e) { process.stderr.write(`emulator: pull waiter: ${e.stack}\n`); }
    }
  }
}

class PubSub {
  constructor(opts) {
    this.dir = path.join(opts.data, 'pubsub');
    this.pullWaitMs = opts.pullWaitMs;
    this.quiet = opts.quiet;
    this.topics = new Map(); // full name -> {r, subs:Set<fullName>}
    this.subs = new Map();   // full name -> Sub
    // Decimal message ids that look like the service's and stay unique across restarts.
    this.nextId = BigInt(Date.now()) * 1000n;
    this.load();
    this.sweeper = setInterval(() => {
      try { this.sweep(); } catch (e) { process.stderr.write(`emulator: sweep: ${e.stack}\n`); }
    }, 100);
    this.sweeper.unref();
  }

  // ---- persistence -------------------------------------------------------------------------
  topicFile(p, t) { return path.join(this.dir, p, 'topics', t + '.json'); }
  subFile(p, s) { return path.join(this.dir, p, 'subscriptions', s + '.json'); }
  journalFile(p, s) { return path.join(this.dir, p, 'subscriptions', s + '.messages.ndjson'); }

  load() {
    for (const p of store.listDir(this.dir)) {
      for (const f of store.listDir(path.join(this.dir, p, 'topics'))) {
        if (!f.endsWith('.json')) continue;
        const r = store.readJson(path.join(this.dir, p, 'topics', f));
        if (r && r.name) this.topics.set(r.name, { r, subs: new Set() });
      }
      for (const f of store.listDir(path.join(this.dir, p, 'subscriptions'))) {
        if (!f.endsWith('.json') || f.endsWith('.messages.ndjson')) continue;
        const r = store.readJson(path.join(this.dir, p, 'subscriptions', f));
        if (!r || !r.name) continue;
        const sub = new Sub(this, r);
        this.subs.set(r.name, sub);
        const t = this.topics.get(r.topic);
        if (t) t.subs.add(r.name);
        const s = r.name.split('/')[3];
        store.readLines(this.journalFile(p, s), (line) => {
          let o;
          try { o = JSON.parse(line); } catch (e) { return; } // torn last line after a crash
          if (o.m) sub.live.set(o.m.messageId, { id: o.m.messageId, buf: Buffer.from(JSON.stringify(o.m)), attempts: 0, seq: 0 });
          else if (o.a) sub.live.delete(o.a);
        });
        for (const rec of sub.live.values()) {
          sub.enqueue(rec);
          if (/^\d+$/.test(rec.id) && BigInt(rec.id) >= this.nextId) this.nextId = BigInt(rec.id) + 1n;
        }
        this.compact(sub);
      }
    }
  }

  compact(sub) {
    const [, p, , s] = sub.r.name.split('/');
    if (sub.log) sub.log.close();
    const file = this.journalFile(p, s);
    const parts = [];
    for (const rec of sub.live.values()) parts.push(M_PRE, rec.buf, M_POST);
    store.writeFileAtomic(file, Buffer.concat(parts));
    sub.log = new store.AppendLog(file);
    sub.journalLines = sub.live.size;
  }

  // ---- routing -----------------------------------------------------------------------------
  // segs: decoded path segments after /v1. Returns {op, fn} or null.
  route(method, segs) {
    if (segs[0] !== 'projects' || !segs[1]) return null;
    const p = segs[1];
    const kind = segs[2];
    if (kind !== 'topics' && kind !== 'subscriptions') return null;
    if (segs.length === 3) {
      if (method !== 'GET') return null;
      return kind === 'topics'
        ? { op: 'pubsub.topics.list', fn: (c) => this.list(c, p, 'topics') }
        : { op: 'pubsub.subscriptions.list', fn: (c) => this.list(c, p, 'subscriptions') };
    }
    let name = segs[3];
    let verb = null;
    const colon = name.lastIndexOf(':');
    if (colon > 0) { verb = name.slice(colon + 1); name = name.slice(0, colon); }
    if (kind === 'topics') {
      if (segs.length === 5 && segs[4] === 'subscriptions' && method === 'GET')
        return { op: 'pubsub.topics.subscriptions.list', fn: (c) => this.topicSubs(c, p, name) };
      if (segs.length !== 4) return null;
      if (verb === 'publish' && method === 'POST') return { op: 'pubsub.topics.publish', fn: (c) => this.publish(c, p, name) };
      if (verb) return null;
      if (method === 'PUT') return { op: 'pubsub.topics.create', fn: (c) => this.createTopic(c, p, name) };
      if (method === 'GET') return { op: 'pubsub.topics.get', fn: (c) => this.getTopic(c, p, name) };
      if (method === 'DELETE') return { op: 'pubsub.topics.delete', fn: (c) => this.deleteTopic(c, p, name) };
      return null;
    }
    if (segs.length !== 4) return null;
    if (method === 'POST') {
      if (verb === 'pull') return { op: 'pubsub.subscriptions.pull', fn: (c) => this.pull(c, p, name) };
      if (verb === 'acknowledge') return { op: 'pubsub.subscriptions.acknowledge', fn: (c) => this.ack(c, p, name) };
      if (verb === 'modifyAckDeadline') return { op: 'pubsub.subscriptions.modifyAckDeadline', fn: (c) => this.modack(c, p, name) };
      return null;
    }
    if (verb) return null;
    if (method === 'PUT') return { op: 'pubsub.subscriptions.create', fn: (c) => this.createSub(c, p, name) };
    if (method === 'GET') return { op: 'pubsub.subscriptions.get', fn: (c) => this.getSub(c, p, name) };
    if (method === 'DELETE') return { op: 'pubsub.subscriptions.delete', fn: (c) => this.deleteSub(c, p, name) };
    if (method === 'PATCH') return { op: 'pubsub.subscriptions.patch', fn: (c) => this.patchSub(c, p, name) };
    return null;
  }

  checkName(kind, p, n) {
    checkProject(p);
    if (!NAME_RE.test(n) || n.startsWith('goog'))
      throw bad(`Invalid [${kind}] name: (name=projects/${p}/${kind}/${n})`);
  }
  topic(p, t) {
    const full = `projects/${p}/topics/${t}`;
    const tp = this.topics.get(full);
    if (!tp) throw notFound(`Resource not found (resource=${t}).`);
    return tp;
  }
  sub(p, s) {
    const sub = this.subs.get(`projects/${p}/subscriptions/${s}`);
    if (!sub) throw notFound(`Resource not found (resource=${s}).`);
    return sub;
  }

  // ---- topics ------------------------------------------------------------------------------
  createTopic(c, p, t) {
    this.checkName('topics', p, t);
    const body = c.json(true);
    const full = `projects/${p}/topics/${t}`;
    if (this.topics.has(full)) throw new ApiError(409, 'Resource already exists in the project (resource=' + t + ').');
    const r = { name: full };
    if (body.labels) r.labels = body.labels;
    if (body.messageRetentionDuration) r.messageRetentionDuration = body.messageRetentionDuration;
    this.topics.set(full, { r, subs: new Set() });
    store.writeJson(this.topicFile(p, t), r);
    c.send(200, r);
  }
  getTopic(c, p, t) { c.send(200, this.topic(p, t).r); }
  deleteTopic(c, p, t) {
    const tp = this.topic(p, t);
    // The service keeps the subscriptions and marks their topic as deleted.
    for (const sn of tp.subs) {
      const sub = this.subs.get(sn);
      if (!sub) continue;
      sub.r.topic = '_deleted-topic_';
      const [, sp, , s] = sn.split('/');
      store.writeJson(this.subFile(sp, s), sub.r);
    }
    this.topics.delete(tp.r.name);
    store.rm(this.topicFile(p, t));
    c.send(200, {});
  }
  list(c, p, kind) {
    const prefix = `projects/${p}/${kind}/`;
    const all = [...(kind === 'topics' ? this.topics.values() : this.subs.values())]
      .map((x) => x.r).filter((r) => r.name.startsWith(prefix)).sort((a, b) => (a.name < b.name ? -1 : 1));
    const size = Math.min(Number(c.query.get('pageSize')) || 100, 1000);
    const start = Number(c.query.get('pageToken')) || 0;
    const page = all.slice(start, start + size);
    const out = {};
    if (page.length) out[kind] = page;
    if (start + size < all.length) out.nextPageToken = String(start + size);
    c.send(200, out);
  }
  topicSubs(c, p, t) {
    const tp = this.topic(p, t);
    const names = [...tp.subs].sort();
    c.send(200, names.length ? { subscriptions: names } : {});
  }

  // ---- publish -----------------------------------------------------------------------------
  publish(c, p, t) {
    if (c.body.length > MAX_PUBLISH_BYTES)
      throw bad(`Request payload size exceeds the limit: ${MAX_PUBLISH_BYTES} bytes.`);
    const tp = this.topic(p, t);
    const body = c.json();
    const msgs = body.messages;
    if (!Array.isArray(msgs) || msgs.length === 0) throw bad('The request contains no messages.');
    if (msgs.length > 1000)
      throw bad(`The value for message_count is too large. You passed ${msgs.length} in the request, but the maximum value is 1000.`);
    const key0 = (msgs[0] && msgs[0].orderingKey) || '';
    const jsons = new Array(msgs.length);
    const ids = new Array(msgs.length);
    const publishTime = nowRfc3339Ns();
    for (let i = 0; i < msgs.length; i++) jsons[i] = this.encodeMessage(msgs[i], key0, publishTime, ids, i);
    // Pullers see the messages at once; the reply waits until the journals have them.
    return this.deliverToTopic(tp, ids, jsons).then(() => c.send(200, { messageIds: ids }));
  }

  // Validates one PubsubMessage and returns its JSON as pull will send it.
  encodeMessage(m, key0, publishTime, ids, i) {
    if (!m || typeof m !== 'object' || Array.isArray(m)) throw bad('Invalid message: must be an object.');
    const data = m.data === undefined || m.data === null ? '' : m.data;
    if (typeof data !== 'string' || !B64_RE.test(data))
      throw bad(`Invalid value at 'messages[${i}].data' (TYPE_BYTES), Base64 decoding failed for "${String(data).slice(0, 40)}"`);
    const attrs = m.attributes;
    let nattr = 0;
    if (attrs !== undefined && attrs !== null) {
      if (typeof attrs !== 'object' || Array.isArray(attrs)) throw bad(`Invalid value at 'messages[${i}].attributes'.`);
      for (const k in attrs) {
        nattr++;
        const v = attrs[k];
        if (typeof v !== 'string') throw bad(`Invalid value at 'messages[${i}].attributes[${k}]' (TYPE_STRING).`);
        if (k.length === 0 || Buffer.byteLength(k) > 256 || k.startsWith('goog'))
          throw bad(`Invalid attribute key "${k.slice(0, 40)}" in message ${i}.`);
        if (Buffer.byteLength(v) > 1024) throw bad(`The attribute value for key "${k}" in message ${i} is longer than 1024 bytes.`);
      }
      if (nattr > 100) throw bad(`Message ${i} has ${nattr} attributes; the maximum is 100.`);
    }
    if (data.length === 0 && nattr === 0)
      throw bad('Some messages in the publish request are empty. Each message must contain a non-empty data field, or at least one attribute.');
    if (data.length > 13400000) throw bad('Message size exceeds the limit of 10 MB.');
    const key = m.orderingKey || '';
    if (key !== key0) throw bad('In a single publish request, all messages must have no ordering key or they must all have the same ordering key.');
    const id = (this.nextId++).toString();
    ids[i] = id;
    // Field order and omission of empty fields follow proto3 JSON as the service prints it.
    let j = '{';
    if (data.length) j += '"data":"' + data + '",'; // base64 needs no JSON escaping
    if (nattr) j += '"attributes":' + JSON.stringify(attrs) + ',';
    j += '"messageId":"' + id + '","publishTime":"' + publishTime + '"';
    if (key) j += ',"orderingKey":' + JSON.stringify(key);
    return j + '}';
  }

  // Adds messages to every subscription of the topic; resolves when they are journaled.
  // Messages are kept as UTF-8 Buffers: pulls then copy bytes instead of building and
  // re-encoding large strings, and backlogs stay out of the V8 heap.
  deliverToTopic(tp, ids, jsons) {
    const writes = [];
    const bufs = jsons.map((j) => Buffer.from(j));
    for (const sn of tp.subs) {
      const sub = this.subs.get(sn);
      if (!sub) continue;
      const parts = [];
      for (let i = 0; i < ids.length; i++) {
        const rec = { id: ids[i], buf: bufs[i], attempts: 0, seq: 0, acked: false };
        sub.live.set(rec.id, rec);
        sub.enqueue(rec);
        parts.push(M_PRE, bufs[i], M_POST);
      }
      writes.push(sub.log.write(Buffer.concat(parts)));
      sub.journalLines += ids.length;
      sub.wake();
    }
    return Promise.all(writes);
  }

  // ---- subscriptions -----------------------------------------------------------------------
  subResource(p, s, body) {
    const r = { name: `projects/${p}/subscriptions/${s}`, topic: body.topic };
    r.pushConfig = body.pushConfig || {};
    const ad = body.ackDeadlineSeconds === undefined ? 0 : Number(body.ackDeadlineSeconds);
    if (!Number.isInteger(ad)) throw bad('Invalid ackDeadlineSeconds.');
    if (ad !== 0 && (ad < 10 || ad > 600))
      throw bad(`Invalid ack deadline given: ${ad}. The minimum deadline is 10 seconds and the maximum is 600 seconds.`);
    r.ackDeadlineSeconds = ad || 10;
    if (body.retainAckedMessages) r.retainAckedMessages = true;
    const ret = parseDuration(body.messageRetentionDuration, 'messageRetentionDuration');
    if (ret !== undefined && (ret < 600 || ret > 31 * 86400))
      throw bad('Invalid messageRetentionDuration: must be between 10 minutes and 31 days.');
    r.messageRetentionDuration = body.messageRetentionDuration || '604800s';
    for (const k of ['labels', 'enableMessageOrdering', 'filter', 'retryPolicy', 'detached',
      'enableExactlyOnceDelivery', 'bigqueryConfig', 'cloudStorageConfig']) {
      if (body[k] !== undefined) r[k] = body[k];
    }
    r.expirationPolicy = body.expirationPolicy || { ttl: '2678400s' };
    if (body.deadLetterPolicy) {
      const d = body.deadLetterPolicy;
      const max = d.maxDeliveryAttempts === undefined || d.maxDeliveryAttempts === 0 ? 5 : Number(d.maxDeliveryAttempts);
      if (!Number.isInteger(max) || max < 5 || max > 100)
        throw bad('Invalid max_delivery_attempts: must be between 5 and 100.');
      if (typeof d.deadLetterTopic !== 'string' || !this.topics.has(d.deadLetterTopic))
        throw notFound(`Resource not found (resource=${d.deadLetterTopic}).`);
      r.deadLetterPolicy = { deadLetterTopic: d.deadLetterTopic, maxDeliveryAttempts: max };
    }
    r.state = 'ACTIVE';
    return r;
  }
  createSub(c, p, s) {
    this.checkName('subscriptions', p, s);
    const body = c.json();
    const full = `projects/${p}/subscriptions/${s}`;
    if (typeof body.topic !== 'string' || !body.topic) throw bad('Invalid [topic] name: (name=)');
    const tp = this.topics.get(body.topic);
    if (this.subs.has(full)) throw new ApiError(409, `Resource already exists in the project (resource=${s}).`);
    if (!tp) throw notFound(`Resource not found (resource=${body.topic.split('/').pop()}).`);
    const r = this.subResource(p, s, body);
    const sub = new Sub(this, r);
    sub.log = new store.AppendLog(this.journalFile(p, s));
    fs.ftruncateSync(sub.log.fd, 0);
    this.subs.set(full, sub);
    tp.subs.add(full);
    store.writeJson(this.subFile(p, s), r);
    c.send(200, r);
  }
  getSub(c, p, s) { c.send(200, this.sub(p, s).r); }
  deleteSub(c, p, s) {
    const sub = this.sub(p, s);
    this.subs.delete(sub.r.name);
    const tp = this.topics.get(sub.r.topic);
    if (tp) tp.subs.delete(sub.r.name);
    sub.log.close();
    for (const w of sub.waiters) w(true);
    store.rm(this.subFile(p, s));
    store.rm(this.journalFile(p, s));
    c.send(200, {});
  }
  patchSub(c, p, s) {
    const sub = this.sub(p, s);
    const body = c.json();
    const upd = body.subscription || {};
    const mask = String(body.updateMask || '').split(',').map((x) => x.trim()).filter(Boolean);
    if (!mask.length) throw bad('The update_mask in the UpdateSubscriptionRequest must be set.');
    const merged = Object.assign({}, sub.r);
    for (const f of mask) {
      if (f === 'name' || f === 'topic') throw bad(`Invalid update_mask provided in the UpdateSubscriptionRequest: the '${f}' field cannot be updated.`);
      if (upd[f] === undefined) delete merged[f]; else merged[f] = upd[f];
    }
    sub.r = this.subResource(p, s, merged);
    store.writeJson(this.subFile(p, s), sub.r);
    c.send(200, sub.r);
  }

  // ---- pull / ack / modack -----------------------------------------------------------------
  pull(c, p, s) {
    const sub = this.sub(p, s);
    const body = c.json();
    const max = Number(body.maxMessages);
    if (!Number.isInteger(max) || max <= 0)
      throw bad('Invalid max_messages: must be greater than 0.', { status: 'INVALID_ARGUMENT' });
    const n = Math.min(max, MAX_PULL);
    if (sub.r.topic === '_deleted-topic_' && sub.backlog() === 0)
      throw new ApiError(400, 'Subscription does not have a topic (deleted).', { status: 'FAILED_PRECONDITION' });
    const reply = this.deliver(sub, n);
    if (reply || body.returnImmediately || this.pullWaitMs <= 0) return reply ? c.sendJson(200, reply) : c.sendText(200, '{}');
    // Nothing ready: hold the pull open for a bounded time like the service does, answering
    // as soon as something is published or redelivered.
    return new Promise((resolve) => {
      let done = false;
      const finish = (buf) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sub.waiters.delete(waiter);
        if (buf) c.sendJson(200, buf); else c.sendText(200, '{}');
        resolve();
      };
      const waiter = (gone) => {
        if (gone) return finish(null);
        if (c.closed()) return finish(null); // never lease messages to a dead connection
        const r = this.deliver(sub, n);
        if (r) finish(r);
      };
      const timer = setTimeout(() => finish(null), this.pullWaitMs);
      sub.waiters.add(waiter);
      c.onClose(() => finish(null));
    });
  }

  // Leases up to n messages; returns the reply body (a Buffer) or null when none is ready.
  deliver(sub, n) {
    const now = Date.now();
    const deadline = now + sub.deadlineMs;
    const dlp = sub.r.deadLetterPolicy;
    const heads = [];  // '{"ackId":"…","message":' per message (ASCII)
    const recs = [];
    let size = 0;
    const tag = sub.r.name.length.toString(36) + '-';
    for (;;) {
      const got = sub.take(n - recs.length);
      if (!got.length) break;
      for (const rec of got) {
        if (dlp && rec.attempts >= dlp.maxDeliveryAttempts) { this.deadLetter(sub, rec); continue; }
        rec.attempts++;
        rec.seq++;
        rec.deadline = deadline;
        sub.out.set(rec.id, rec);
        const head = '{"ackId":"' + tag + rec.id + '-' + rec.seq + '","message":';
        heads.push(head);
        recs.push(rec);
        size += head.length + rec.buf.length + 2 + (dlp ? 20 + String(rec.attempts).length : 0);
      }
      if (recs.length >= n) break;
    }
    if (!recs.length) return null;
    if (deadline < sub.minDeadline) sub.minDeadline = deadline;
    const OPEN = '{"receivedMessages":[';
    const out = Buffer.allocUnsafe(size + OPEN.length + 2);
    let off = out.latin1Write(OPEN, 0);
    for (let i = 0; i < recs.length; i++) {
      if (i) off = out.writeUInt8(0x2c, off); // ','
      off += out.latin1Write(heads[i], off);
      off += recs[i].buf.copy(out, off);
      if (dlp) off += out.latin1Write(',"deliveryAttempt":' + recs[i].attempts, off);
      off = out.writeUInt8(0x7d, off); // '}'
    }
    off += out.latin1Write(']}', off);
    return out.subarray(0, off);
  }

  deadLetter(sub, rec) {
    const tp = this.topics.get(sub.r.deadLetterPolicy.deadLetterTopic);
    if (tp) {
      const m = JSON.parse(rec.buf.toString());
      m.attributes = Object.assign({}, m.attributes, {
        CloudPubSubDeadLetterSourceDeliveryCount: String(rec.attempts),
        CloudPubSubDeadLetterSourceSubscription: sub.r.name.split('/')[3],
        CloudPubSubDeadLetterSourceSubscriptionProject: sub.r.name.split('/')[1],
        CloudPubSubDeadLetterSourceTopicPublishTime: m.publishTime,
      });
      const ids = [];
      const json = this.encodeMessage(m, m.orderingKey || '', nowRfc3339Ns(), ids, 0);
      this.deliverToTopic(tp, ids, [json]).catch((e) => process.stderr.write(`emulator: dead-letter journal: ${e.message}\n`));
    }
    this.settle(sub, [rec]).catch((e) => process.stderr.write(`emulator: journal: ${e.message}\n`));
  }

  // Removes acked (or dead-lettered) messages for good, with one journal write for all;
  // resolves when the journal has it.
  settle(sub, recs) {
    let text = '';
    for (const rec of recs) {
      if (rec.acked) continue;
      rec.acked = true;
      sub.out.delete(rec.id);
      sub.live.delete(rec.id);
      text += '{"a":"' + rec.id + '"}\n';
      sub.journalLines++;
    }
    return sub.log.write(text);
  }

  // With exactly-once delivery, `failed` maps each id that failed to its ErrorInfo value: an
  // unknown, acked or expired one (its lease is gone) is PERMANENT_FAILURE_INVALID_ACK_ID, and
  // a fault rule's ackIdResult fails the first ackIdCount others; those are left out of recs.
  parseAckIds(c, sub) {
    if (c.body.length > MAX_ACK_BYTES)
      throw bad(`Request payload size exceeds the limit: ${MAX_ACK_BYTES} bytes.`);
    const body = c.json();
    const ids = body.ackIds;
    if (!Array.isArray(ids) || ids.length === 0) throw bad('No ack ids specified.');
    const recs = [];
    const failed = {};
    const eod = !!sub.r.enableExactlyOnceDelivery;
    const rule = eod && c.rule && c.rule.ackIdResult ? c.rule : null;
    let injected = 0;
    for (const a of ids) {
      if (typeof a !== 'string') throw bad('Invalid ack ID.');
      const parts = a.split('-');
      if (parts.length !== 3) throw bad(`You have passed an invalid ack ID to the service (ack_id=${a.slice(0, 64)}).`);
      const rec = sub.live.get(parts[1]);
      const seq = Number(parts[2]);
      if (eod && (!rec || seq !== rec.seq || !sub.out.has(rec.id))) {
        failed[a] = 'PERMANENT_FAILURE_INVALID_ACK_ID';
      } else if (rule && injected < (rule.ackIdCount === undefined ? Infinity : rule.ackIdCount)) {
        failed[a] = rule.ackIdResult;
        injected++;
      } else if (rec) {
        // Unknown or already-acked ids succeed silently, as without exactly-once delivery.
        recs.push([rec, seq]);
      }
    }
    return { body, recs, failed };
  }

  // The answer of a request some of whose ids failed (exactly-once delivery): 400 for the
  // whole request, the per-id results in an ErrorInfo's metadata.
  ackIdFailure(failed) {
    return new ApiError(400, 'Some acknowledgement ids in the request were invalid. This could be because the acknowledgement ids have expired or the acknowledgement ids were malformed.', {
      details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'EXACTLY_ONCE_ACKID_FAILURE',
        domain: 'pubsub.googleapis.com', metadata: failed }],
    });
  }

  ack(c, p, s) {
    const sub = this.sub(p, s);
    const { recs, failed } = this.parseAckIds(c, sub);
    // An ack from an earlier delivery still acks the message: delivery is at-least-once and
    // the service accepts late acks on a best-effort basis.
    const written = this.settle(sub, recs.map((x) => x[0]));
    this.maybeCompact(sub);
    if (Object.keys(failed).length) return written.then(() => c.sendError(this.ackIdFailure(failed)));
    return written.then(() => c.send(200, {}));
  }

  modack(c, p, s) {
    const sub = this.sub(p, s);
    const { body, recs, failed } = this.parseAckIds(c, sub);
    const secs = body.ackDeadlineSeconds === undefined ? 0 : Number(body.ackDeadlineSeconds);
    if (!Number.isInteger(secs) || secs < 0 || secs > 600)
      throw bad(`Invalid ack deadline given: ${body.ackDeadlineSeconds}. The minimum deadline is 0 seconds and the maximum is 600 seconds.`);
    const now = Date.now();
    let requeued = false;
    for (const [rec, seq] of recs) {
      // Only the current lease can be changed; a stale ackId's lease is already gone.
      if (seq !== rec.seq || !sub.out.has(rec.id)) continue;
      if (secs === 0) {
        sub.out.delete(rec.id);
        sub.enqueue(rec);
        requeued = true;
      } else {
        rec.deadline = now + secs * 1000; // counted from now, not added to the old deadline
        if (rec.deadline < sub.minDeadline) sub.minDeadline = rec.deadline;
      }
    }
    if (requeued) sub.wake();
    if (Object.keys(failed).length) throw this.ackIdFailure(failed);
    c.send(200, {});
  }

  // Rewrites the journal once it is mostly acks; the rewrite (synchronous) is at most a
  // tenth of the lines appended since the last one, so its cost stays amortised and small.
  maybeCompact(sub) {
    if (sub.journalLines > 100000 && sub.journalLines > 10 * sub.live.size) this.compact(sub);
  }

  // Returns leases whose deadline passed to the ready queue (redelivery).
  sweep() {
    const now = Date.now();
    for (const sub of this.subs.values()) {
      if (!sub.out.size || now < sub.minDeadline) continue;
      let min = Infinity;
      let requeued = false;
      for (const rec of sub.out.values()) {
        if (rec.deadline <= now) {
          sub.out.delete(rec.id);
          sub.enqueue(rec);
          requeued = true;
        } else if (rec.deadline < min) min = rec.deadline;
      }
      sub.minDeadline = min;
      if (requeued) sub.wake();
    }
  }

  summary() {
    const subs = {};
    for (const [n, sub] of this.subs) subs[n] = { topic: sub.r.topic, backlog: sub.backlog(), outstanding: sub.out.size };
    return { topics: [...this.topics.keys()], subscriptions: subs };
  }

  close() {
    clearInterval(this.sweeper);
    for (const sub of this.subs.values()) if (sub.log) sub.log.close();
  }
}

module.exports = { PubSub, nowRfc3339Ns };
