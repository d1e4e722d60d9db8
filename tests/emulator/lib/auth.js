'use strict';
// OAuth2 token endpoint, metadata server and bearer-token checks.
//
// Service-account keys are registered with --sa-key FILE or POST /_emulator/sa-keys; only
// their public halves are kept. A JWT assertion is accepted when its RS256 signature verifies
// with the key registered for its `iss`, and `aud`, `scope`, `iat`, `exp` are as Google wants.

const crypto = require('crypto');
const fs = require('fs');

const AUDIENCES = new Set(['https://oauth2.googleapis.com/token', 'https://www.googleapis.com/oauth2/v4/token',
  'https://accounts.google.com/o/oauth2/token']);
const SKEW_S = 300;

// A key file whose token_uri points at this emulator yields aud = that URL; the host in it
// may be spelled differently from the request's Host (localhost vs 127.0.0.1).
function isLoopbackTokenUrl(aud) {
  try {
    const u = new URL(String(aud));
    return ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) && ['/token', '/oauth2/v4/token'].includes(u.pathname);
  } catch (e) { return false; }
}

class Auth {
  constructor(opts) {
    this.required = !!opts.auth;
    this.lifetime = opts.tokenLifetime || 3600;
    this.project = opts.project || 'test-project';
    this.keys = new Map();      // client_email -> {publicKey, keyId}
    this.tokens = new Map();    // access token -> {expires (ms), email, scope}
    this.refreshTokens = new Set(opts.refreshTokens || []);
    this.metadataEmail = `default@${this.project}.iam.gserviceaccount.com`;
    for (const f of opts.saKeys || []) this.addKey(JSON.parse(fs.readFileSync(f, 'utf8')));
  }

  // Registers a service-account key JSON (the private key is used only to derive the public one).
  addKey(k) {
    if (!k || typeof k.client_email !== 'string') throw new Error('key JSON needs client_email');
    const src = k.public_key || k.private_key;
    if (!src) throw new Error('key JSON needs private_key or public_key');
    const publicKey = crypto.createPublicKey(src);
    this.keys.set(k.client_email, { publicKey, keyId: k.private_key_id });
    return k.client_email;
  }

  mint(email, scope, lifetime = this.lifetime) {
    const token = 'ya29.emu-' + crypto.randomBytes(24).toString('base64url');
    this.tokens.set(token, { expires: Date.now() + lifetime * 1000, email, scope });
    if (this.tokens.size > 100000) this.prune();
    return { access_token: token, expires_in: Math.max(0, lifetime - 1), token_type: 'Bearer' };
  }
  prune() { const now = Date.now(); for (const [t, v] of this.tokens) if (v.expires <= now) this.tokens.delete(t); }
  expireAll() { const n = this.tokens.size; this.tokens.clear(); return n; }

  // Returns null when the request may go on, or an error message for a 401.
  check(req) {
    if (!this.required) return null;
    const h = req.headers.authorization || '';
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) return 'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.';
    const tok = this.tokens.get(m[1]);
    if (tok) {
      if (tok.expires > Date.now()) return null;
      this.tokens.delete(m[1]);
      return 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.';
    }
    // A self-signed JWT (iss = sub = the account, aud = the API) is also a valid bearer.
    if (m[1].split('.').length === 3) {
      const r = this.verifyJwt(m[1], true);
      if (!r.error) return null;
    }
    return 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.';
  }

  // Returns {claims} or {error, description}. `aud` must be Google's token URL or this
  // emulator's own /token (base = scheme://host of the request), as a C client following
  // token_uri would send.
  verifyJwt(jwt, selfSigned, base) {
    const parts = String(jwt).split('.');
    if (parts.length !== 3) return { error: 'invalid_grant', description: 'Invalid JWT: malformed assertion.' };
    let header; let claims;
    try {
      header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
      claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
    } catch (e) { return { error: 'invalid_grant', description: 'Invalid JWT: cannot decode header or claims.' }; }
    if (!header || header.alg !== 'RS256') return { error: 'invalid_grant', description: 'Invalid JWT: alg must be RS256.' };
    const key = claims && this.keys.get(claims.iss);
    if (!key) return { error: 'invalid_grant', description: 'Invalid grant: account not found' };
    if (header.kid && key.keyId && header.kid !== key.keyId) return { error: 'invalid_grant', description: 'Invalid JWT Signature.' };
    const ok = crypto.verify('RSA-SHA256', Buffer.from(parts[0] + '.' + parts[1]), key.publicKey, Buffer.from(parts[2], 'base64url'));
    if (!ok) return { error: 'invalid_grant', description: 'Invalid JWT Signature.' };
    const now = Date.now() / 1000;
    const { iat, exp } = claims;
    if (typeof iat !== 'number' || typeof exp !== 'number' || exp <= now || iat > now + SKEW_S || exp - iat > 3600 + 5)
      return { error: 'invalid_grant', description: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.' };
    if (!selfSigned) {
      if (!AUDIENCES.has(claims.aud) && claims.aud !== `${base}/token` && !isLoopbackTokenUrl(claims.aud))
        return { error: 'invalid_grant', description: 'Invalid JWT: Failed audience check. The expected audience is the token URL.' };
      if (typeof claims.scope !== 'string' || !claims.scope.trim())
        return { error: 'invalid_scope', description: 'Invalid OAuth scope or ID token audience provided.' };
    } else if (!claims.aud && !claims.scope) {
      return { error: 'invalid_grant', description: 'self-signed JWT needs aud or scope' };
    }
    return { claims };
  }

  // POST /token (form-encoded, as Google's token endpoint).
  token(c) {
    const ct = String(c.req.headers['content-type'] || '');
    let f;
    if (/json/i.test(ct)) { const j = c.json(); f = new URLSearchParams(Object.entries(j).map(([k, v]) => [k, String(v)])); } else f = new URLSearchParams(c.body.toString('utf8'));
    const fail = (code, error, description) => c.send(code, { error, error_description: description });
    const grant = f.get('grant_type');
    if (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      const r = this.verifyJwt(f.get('assertion') || '', false, c.base);
      if (r.error) return fail(400, r.error, r.description);
      return c.send(200, this.mint(r.claims.iss, r.claims.scope));
    }
    if (grant === 'refresh_token') {
      const rt = f.get('refresh_token');
      if (!rt || !f.get('client_id')) return fail(400, 'invalid_request', 'Missing required parameter: refresh_token or client_id');
      if (this.refreshTokens.size && !this.refreshTokens.has(rt)) return fail(400, 'invalid_grant', 'Bad Request');
      if (rt === 'revoked' || rt === 'invalid') return fail(400, 'invalid_grant', 'Token has been expired or revoked.');
      const t = this.mint('user@example.com', f.get('scope') || 'https://www.googleapis.com/auth/cloud-platform');
      t.scope = f.get('scope') || 'https://www.googleapis.com/auth/cloud-platform';
      return c.send(200, t);
    }
    return fail(400, 'unsupported_grant_type', `Invalid grant_type: ${grant || ''}`);
  }

  // GET /computeMetadata/v1/... ; rest = path after /computeMetadata/v1
  metadata(c, rest) {
    const h = { 'Metadata-Flavor': 'Google', Server: 'Metadata Server for VM' };
    if (c.req.headers['metadata-flavor'] !== 'Google' || c.req.headers['x-forwarded-for'])
      return c.sendRaw(403, Buffer.from('Missing required header "Metadata-Flavor": "Google"\n'), Object.assign({ 'Content-Type': 'text/plain; charset=utf-8' }, h));
    const text = (s) => c.sendRaw(200, Buffer.from(s), Object.assign({ 'Content-Type': 'application/text' }, h));
    const json = (o) => c.sendRaw(200, Buffer.from(JSON.stringify(o)), Object.assign({ 'Content-Type': 'application/json' }, h));
    const p = rest.replace(/\/+$/, '');
    const sa = /^\/instance\/service-accounts\/(default|[^/]+@[^/]+)(\/.*)?$/.exec(p);
    if (p === '/instance' || p === '') {
      if (c.query.get('recursive') === 'true') return json({ id: 1234567890, zone: 'projects/123456789012/zones/us-central1-a', hostname: 'emulator.internal' });
      return text('attributes/\nhostname\nid\nservice-accounts/\nzone\n');
    }
    if (p === '/project/project-id') return text(this.project);
    if (p === '/project/numeric-project-id') return text('123456789012');
    if (p === '/instance/zone') return text('projects/123456789012/zones/us-central1-a');
    if (p === '/instance/service-accounts') return text('default/\n' + this.metadataEmail + '/\n');
    if (sa) {
      const what = sa[2] || '';
      if (what === '/token') return json(this.mint(this.metadataEmail, (c.query.get('scopes') || 'https://www.googleapis.com/auth/cloud-platform').replace(/,/g, ' ')));
      if (what === '/email') return text(this.metadataEmail);
      if (what === '/scopes') return text('https://www.googleapis.com/auth/cloud-platform\n');
      if (what === '/identity') return text('emulator-id-token');
      if (what === '') return c.query.get('recursive') === 'true'
        ? json({ aliases: ['default'], email: this.metadataEmail, scopes: ['https://www.googleapis.com/auth/cloud-platform'] })
        : text('aliases\nemail\nidentity\nscopes\ntoken\n');
    }
    return c.sendRaw(404, Buffer.from('Not Found\n'), Object.assign({ 'Content-Type': 'text/html; charset=UTF-8' }, h));
  }
}

module.exports = { Auth };
