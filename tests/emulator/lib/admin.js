'use strict';
// The admin API under /_emulator/ (never subject to auth or fault injection). See README.md.

const { ApiError, bad } = require('./errors');

function route(app, c) {
  const p = c.path.replace(/\/+$/, '');
  const m = c.method;
  const R = (op, fn) => ({ api: 'admin', op: 'admin.' + op, admin: true, fn });
  switch (p) {
    case '/_emulator/health':
      return R('health', (x) => x.send(200, { ok: true, port: app.port, grpcPort: app.bigqueryWrite ? app.bigqueryWrite.port : null, pid: process.pid, uptimeSeconds: Math.round(process.uptime()) }));
    case '/_emulator/state':
      return R('state', (x) => x.send(200, Object.assign({}, app.pubsub.summary(), app.bigquery.summary(), app.gcs.summary(),
        app.bigqueryWrite ? { writeStreams: app.bigqueryWrite.summary() } : {})));
    case '/_emulator/faults':
      if (m === 'GET') return R('faults.list', (x) => x.send(200, { rules: app.faults.list() }));
      if (m === 'DELETE') return R('faults.clear', (x) => { app.faults.clear(); x.send(200, {}); });
      if (m === 'POST') {
        return R('faults.add', (x) => {
          let body;
          try { body = JSON.parse(x.body.toString('utf8') || 'null'); } catch (e) { throw bad('Invalid JSON in fault rule.'); }
          const specs = Array.isArray(body) ? body : body && Array.isArray(body.rules) ? body.rules : [body];
          try { x.send(200, { rules: specs.map((s) => app.faults.add(s)) }); } catch (e) { throw bad(e.message); }
        });
      }
      return null;
    case '/_emulator/counters':
      if (m === 'GET') return R('counters.get', (x) => x.send(200, app.faults.countersJson()));
      if (m === 'DELETE') return R('counters.reset', (x) => { app.faults.resetCounters(); x.send(200, {}); });
      return null;
    case '/_emulator/bytes':
      // Request bytes received per operation (REST only: line, headers, body as on the wire)
      return m === 'GET' ? R('bytes.get', (x) => x.send(200, app.faults.bytesJson())) : null;
    case '/_emulator/reset':
      return m === 'POST' ? R('reset', (x) => { app.faults.clear(); app.faults.resetCounters(); x.send(200, {}); }) : null;
    case '/_emulator/tokens/expire':
      return m === 'POST' ? R('tokens.expire', (x) => x.send(200, { expired: app.auth.expireAll() })) : null;
    case '/_emulator/tokens':
      // Mints a token directly, e.g. for curl users: {"lifetime": 60}
      return m === 'POST' ? R('tokens.mint', (x) => {
        const b = x.json();
        x.send(200, app.auth.mint(b.email || 'admin@emulator', b.scope || 'https://www.googleapis.com/auth/cloud-platform', Number(b.lifetime) || undefined));
      }) : null;
    case '/_emulator/sa-keys':
      return m === 'POST' ? R('sa-keys.add', (x) => {
        try { x.send(200, { registered: app.auth.addKey(x.json()) }); } catch (e) { throw bad(e.message); }
      }) : null;
    case '/_emulator/ddl':
      // Body: DDL text. Query: project (required unless the DDL names it), dataset (override).
      return m === 'POST' ? R('ddl', (x) => {
        try {
          x.send(200, { created: app.bigquery.applyDdl(x.body.toString('utf8'), x.query.get('project') || app.opts.project, x.query.get('dataset') || undefined) });
        } catch (e) {
          if (e instanceof ApiError) throw e;
          throw bad(`DDL: ${e.message}`);
        }
      }) : null;
    case '/_emulator/config':
      // Runtime knobs: {"pullWaitMs": 200, "tokenLifetime": 5, "auth": true}
      return m === 'POST' ? R('config', (x) => {
        const b = x.json();
        if (b.pullWaitMs !== undefined) app.pubsub.pullWaitMs = Number(b.pullWaitMs);
        if (b.tokenLifetime !== undefined) app.auth.lifetime = Number(b.tokenLifetime);
        if (b.auth !== undefined) app.auth.required = !!b.auth;
        if (b.listPageMax !== undefined) app.gcs.listPageMax = Number(b.listPageMax);
        x.send(200, { pullWaitMs: app.pubsub.pullWaitMs, tokenLifetime: app.auth.lifetime, auth: app.auth.required, listPageMax: app.gcs.listPageMax || 1000 });
      }) : null;
    default: {
      const f = /^\/_emulator\/faults\/(\d+)$/.exec(p);
      if (f && m === 'DELETE') {
        return R('faults.remove', (x) => {
          if (!app.faults.remove(Number(f[1]))) throw new ApiError(404, `No fault rule ${f[1]}.`);
          x.send(200, {});
        });
      }
      return null;
    }
  }
}

module.exports = { route };
