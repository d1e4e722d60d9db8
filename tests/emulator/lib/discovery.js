'use strict';
// BigQuery's discovery document, served as Google's host serves it (`/$discovery/rest?version=v2`)
// so that Google's `bq` CLI pointed at the emulator (`bq --api http://127.0.0.1:PORT`) builds its
// client from the real API description and sends exactly what it sends to Google.
//
// The document is Google's own: the copy the Cloud SDK ships for bq
// (`platform/bq/discovery_next/bigquery.json`), found next to the `bq` on PATH, under
// CLOUDSDK_ROOT_DIR or in Debian's install folder, or named with `--bq-discovery FILE`. It is
// never copied into this repository: the one that matches the installed bq is the one to serve.
// Only rootUrl, baseUrl and mtlsRootUrl change, to this emulator's address.

const fs = require('fs');
const path = require('path');
const { ApiError } = require('./errors');

const REL = path.join('platform', 'bq', 'discovery_next', 'bigquery.json');

// Cloud SDK roots worth trying, most specific first.
function sdkRoots() {
  const roots = [];
  if (process.env.CLOUDSDK_ROOT_DIR) roots.push(process.env.CLOUDSDK_ROOT_DIR);
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    for (const tool of ['bq', 'gcloud']) {
      try {
        // <root>/bin/bq, often reached through a symlink such as /usr/bin/bq
        roots.push(path.dirname(path.dirname(fs.realpathSync(path.join(dir, tool)))));
      } catch (e) { /* not in this folder */ }
    }
  }
  roots.push('/usr/lib/google-cloud-sdk', '/usr/share/google-cloud-sdk', '/opt/google-cloud-sdk',
    '/google-cloud-sdk');
  return roots;
}

class Discovery {
  // file: an explicit path (--bq-discovery), else the SDK's copy is looked up on first use.
  constructor(file) {
    this.file = file || null;
    this.doc = null;
  }

  // The parsed document, or an ApiError 404 saying where it was looked for.
  load() {
    if (this.doc) return this.doc;
    const tried = this.file ? [this.file] : sdkRoots().map((r) => path.join(r, REL));
    for (const f of tried) {
      let text;
      try { text = fs.readFileSync(f, 'utf8'); } catch (e) { continue; }
      this.doc = JSON.parse(text);
      this.file = f;
      return this.doc;
    }
    throw new ApiError(404, `BigQuery's discovery document was not found (looked for ${tried.join(', ')}); `
      + 'install the Cloud SDK (bq) or pass --bq-discovery FILE.', { status: 'NOT_FOUND' });
  }

  // GET /$discovery/rest?version=v2 and /discovery/v1/apis/bigquery/v2/rest.
  serve(c) {
    const v = c.query.get('version');
    if (c.path === '/$discovery/rest' && v && v !== 'v2') {
      throw new ApiError(404, `The emulator serves BigQuery v2 only, not version ${v}.`, { status: 'NOT_FOUND' });
    }
    const doc = Object.assign({}, this.load());
    doc.rootUrl = `${c.base}/`;
    doc.mtlsRootUrl = `${c.base}/`;
    doc.baseUrl = `${c.base}/${doc.servicePath || 'bigquery/v2/'}`;
    c.send(200, doc);
  }
}

module.exports = { Discovery };
