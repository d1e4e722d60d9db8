'use strict';
// OAuth2 token endpoint (JWT bearer grant signed by the official `jws` library, as gtoken
// does), refresh-token grant, token expiry → 401, metadata server header rules.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const jws = require('jws');
const { startEmulator, makeKey, call, sleep } = require('./helpers');

let emu; let key; let otherKey;
before(async () => {
  key = JSON.parse(fs.readFileSync(makeKey('conf@conf-proj.iam.gserviceaccount.com'), 'utf8'));
  otherKey = JSON.parse(fs.readFileSync(makeKey('conf@conf-proj.iam.gserviceaccount.com'), 'utf8'));
  const keyFile = makeKey('registered-by-flag@conf-proj.iam.gserviceaccount.com');
  emu = await startEmulator(['--auth', '--token-lifetime', '2', '--project', 'conf-proj', '--sa-key', keyFile]);
  const r = await emu.admin('POST', '/_emulator/sa-keys', key);
  assert.equal(r.registered, key.client_email);
});
after(async () => { await emu.stop(); });

// The claims gtoken sends: iss, scope, aud (token URL), exp, iat; header {alg: RS256}.
function assertion(k, over = {}) {
  const iat = Math.floor(Date.now() / 1000);
  const payload = Object.assign({ iss: k.client_email, scope: 'https://www.googleapis.com/auth/cloud-platform', aud: 'https://oauth2.googleapis.com/token', exp: iat + 3600, iat }, over);
  return jws.sign({ header: { alg: 'RS256' }, payload, secret: k.private_key });
}
const grant = (jwt) => call(emu.url + '/token', 'POST', new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt }).toString(), { 'content-type': 'application/x-www-form-urlencoded' });

test('JWT bearer grant: valid assertion gives a token; the token works until it expires', async () => {
  const r = await grant(assertion(key));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.token_type, 'Bearer');
  assert.ok(r.json.expires_in >= 1 && r.json.expires_in <= 2);
  const ok = await call(emu.url + '/v1/projects/conf-proj/topics', 'GET', undefined, { authorization: 'Bearer ' + r.json.access_token });
  assert.equal(ok.status, 200);
  await sleep(2100);
  const expired = await call(emu.url + '/bigquery/v2/projects/conf-proj/datasets', 'GET', undefined, { authorization: 'Bearer ' + r.json.access_token });
  assert.equal(expired.status, 401);
  assert.equal(expired.json.error.status, 'UNAUTHENTICATED');
  assert.equal(expired.json.error.errors[0].reason, 'authError');
});

test('JWT bearer grant: signature, iss, aud, scope and exp are checked', async () => {
  const cases = [
    ['wrong key', assertion(otherKey)],
    ['unknown iss', assertion(key, { iss: 'nobody@x.iam.gserviceaccount.com' })],
    ['wrong aud', assertion(key, { aud: 'https://example.com/token' })],
    ['expired', assertion(key, { iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['too long', assertion(key, { exp: Math.floor(Date.now() / 1000) + 7200 })],
    ['tampered', assertion(key).replace(/\.[^.]+\./, '.' + Buffer.from('{"iss":"x"}').toString('base64url') + '.')],
  ];
  for (const [what, jwt] of cases) {
    const r = await grant(jwt);
    assert.equal(r.status, 400, what);
    assert.equal(r.json.error, 'invalid_grant', what);
  }
  const noScope = await grant(assertion(key, { scope: undefined }));
  assert.equal(noScope.status, 400);
  assert.equal(noScope.json.error, 'invalid_scope');
  const unsupported = await call(emu.url + '/token', 'POST', 'grant_type=password', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(unsupported.json.error, 'unsupported_grant_type');
  // aud may also be this emulator's token URL (a key file whose token_uri points here)
  assert.equal((await grant(assertion(key, { aud: emu.url + '/token' }))).status, 200);
  assert.equal((await grant(assertion(key, { aud: `http://localhost:${emu.port}/token` }))).status, 200);
  // a key registered with --sa-key works too
  const k2 = JSON.parse(fs.readFileSync(emu.args[emu.args.indexOf('--sa-key') + 1], 'utf8'));
  assert.equal((await grant(assertion(k2))).status, 200);
});

test('refresh_token grant', async () => {
  const r = await call(emu.url + '/token', 'POST', 'grant_type=refresh_token&client_id=c&client_secret=s&refresh_token=rt', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(r.status, 200);
  assert.ok(r.json.access_token);
  const bad = await call(emu.url + '/token', 'POST', 'grant_type=refresh_token&client_id=c&client_secret=s&refresh_token=revoked', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(bad.json.error, 'invalid_grant');
});

test('401 on missing or unknown token; admin expire-all', async () => {
  assert.equal((await call(emu.url + '/storage/v1/b/x', 'GET')).status, 401);
  assert.equal((await call(emu.url + '/b/x', 'GET', undefined, { authorization: 'Bearer nope' })).status, 401);
  const t = (await grant(assertion(key))).json.access_token;
  assert.equal((await call(emu.url + '/b/x', 'GET', undefined, { authorization: 'Bearer ' + t })).status, 404);
  const e = await emu.admin('POST', '/_emulator/tokens/expire');
  assert.ok(e.expired >= 1);
  assert.equal((await call(emu.url + '/b/x', 'GET', undefined, { authorization: 'Bearer ' + t })).status, 401);
});

test('metadata server: header required both ways; token, project-id, email', async () => {
  const base = emu.url + '/computeMetadata/v1';
  const no = await fetch(base + '/instance/service-accounts/default/token');
  assert.equal(no.status, 403);
  const probe = await fetch(base + '/instance', { headers: { 'Metadata-Flavor': 'Google' } });
  assert.equal(probe.status, 200);
  assert.equal(probe.headers.get('metadata-flavor'), 'Google');
  const tok = await (await fetch(base + '/instance/service-accounts/default/token', { headers: { 'Metadata-Flavor': 'Google' } })).json();
  assert.equal(tok.token_type, 'Bearer');
  assert.equal((await call(emu.url + '/b/x', 'GET', undefined, { authorization: 'Bearer ' + tok.access_token })).status, 404);
  assert.equal(await (await fetch(base + '/project/project-id', { headers: { 'Metadata-Flavor': 'Google' } })).text(), 'conf-proj');
  assert.match(await (await fetch(base + '/instance/service-accounts/default/email', { headers: { 'Metadata-Flavor': 'Google' } })).text(), /@conf-proj\.iam\.gserviceaccount\.com$/);
});

test('google-auth-library Compute client gets tokens from the emulator metadata server', async () => {
  process.env.GCE_METADATA_HOST = emu.url.replace('http://', '');
  process.env.METADATA_SERVER_DETECTION = 'none';
  const { Compute } = require('google-auth-library');
  const c = new Compute();
  const { token } = await c.getAccessToken();
  assert.match(token, /^ya29\./);
});
