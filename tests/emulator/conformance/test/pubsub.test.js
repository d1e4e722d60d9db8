'use strict';
// googleapis' pubsub('v1') REST client against the emulator (auth on, tokens from the
// emulator's metadata server), plus wire checks the client does not make.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startEmulator, call, sleep } = require('./helpers');

let emu; let ps; const P = 'projects/conf-proj';
before(async () => {
  emu = await startEmulator(['--auth', '--project', 'conf-proj', '--pull-wait-ms', '300']);
  process.env.GCE_METADATA_HOST = emu.url.replace('http://', '');
  process.env.METADATA_SERVER_DETECTION = 'assume-present';
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
  const { google } = require('googleapis');
  const auth = new google.auth.GoogleAuth({ scopes: ['https://www.googleapis.com/auth/pubsub'] });
  ps = google.pubsub({ version: 'v1', rootUrl: emu.url + '/', auth });
});
after(async () => { await emu.stop(); });

const b64 = (s) => Buffer.from(s).toString('base64');
const status = (e) => e.code || (e.response && e.response.status);

test('topics and subscriptions: create, get, 409 on duplicate, 404 on unknown', async () => {
  const t = await ps.projects.topics.create({ name: `${P}/topics/orders` });
  assert.equal(t.data.name, `${P}/topics/orders`);
  await assert.rejects(ps.projects.topics.create({ name: `${P}/topics/orders` }), (e) => status(e) === 409);
  const s = await ps.projects.subscriptions.create({ name: `${P}/subscriptions/orders-sub`, requestBody: { topic: `${P}/topics/orders`, ackDeadlineSeconds: 10 } });
  assert.equal(s.data.ackDeadlineSeconds, 10);
  assert.equal(s.data.topic, `${P}/topics/orders`);
  await assert.rejects(ps.projects.subscriptions.create({ name: `${P}/subscriptions/x-sub`, requestBody: { topic: `${P}/topics/nope` } }), (e) => status(e) === 404);
  await assert.rejects(ps.projects.subscriptions.create({ name: `${P}/subscriptions/y-sub`, requestBody: { topic: `${P}/topics/orders`, ackDeadlineSeconds: 5 } }), (e) => status(e) === 400);
  await assert.rejects(ps.projects.subscriptions.get({ subscription: `${P}/subscriptions/nope` }), (e) => status(e) === 404);
  const g = await ps.projects.subscriptions.get({ subscription: `${P}/subscriptions/orders-sub` });
  assert.equal(g.data.name, `${P}/subscriptions/orders-sub`);
  const list = await ps.projects.topics.list({ project: P });
  assert.deepEqual(list.data.topics.map((x) => x.name), [`${P}/topics/orders`]);
});

test('publish, pull, ack', async () => {
  const pub = await ps.projects.topics.publish({ topic: `${P}/topics/orders`, requestBody: { messages: [
    { data: b64('{"n":1}'), attributes: { type: 'order' } }, { data: b64('{"n":2}') }, { attributes: { only: 'attrs' } },
  ] } });
  assert.equal(pub.data.messageIds.length, 3);
  assert.match(pub.data.messageIds[0], /^\d+$/);
  const r = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/orders-sub`, requestBody: { maxMessages: 10 } });
  const msgs = r.data.receivedMessages;
  assert.equal(msgs.length, 3);
  assert.equal(Buffer.from(msgs[0].message.data, 'base64').toString(), '{"n":1}');
  assert.deepEqual(msgs[0].message.attributes, { type: 'order' });
  assert.equal(msgs[0].message.messageId, pub.data.messageIds[0]);
  assert.match(msgs[0].message.publishTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  assert.equal(msgs[0].deliveryAttempt, undefined);
  await ps.projects.subscriptions.acknowledge({ subscription: `${P}/subscriptions/orders-sub`, requestBody: { ackIds: msgs.map((m) => m.ackId) } });
  const t0 = Date.now();
  const empty = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/orders-sub`, requestBody: { maxMessages: 10 } });
  assert.deepEqual(empty.data, {});
  assert.ok(Date.now() - t0 >= 250, 'an empty pull waits a little');
});

test('publish validation: empty message, too many messages', async () => {
  await assert.rejects(ps.projects.topics.publish({ topic: `${P}/topics/orders`, requestBody: { messages: [{}] } }), (e) => status(e) === 400);
  const many = Array.from({ length: 1001 }, () => ({ data: b64('x') }));
  await assert.rejects(ps.projects.topics.publish({ topic: `${P}/topics/orders`, requestBody: { messages: many } }), (e) => status(e) === 400);
});

test('an unacked message is redelivered after its ack deadline (10 s)', async () => {
  await ps.projects.topics.publish({ topic: `${P}/topics/orders`, requestBody: { messages: [{ data: b64('redeliver-me') }] } });
  const r1 = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/orders-sub`, requestBody: { maxMessages: 10 } });
  assert.equal(r1.data.receivedMessages.length, 1);
  const id = r1.data.receivedMessages[0].message.messageId;
  await sleep(5000);
  const mid = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/orders-sub`, requestBody: { maxMessages: 10 } });
  assert.deepEqual(mid.data, {}, 'still leased before the deadline');
  await sleep(5200);
  const r2 = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/orders-sub`, requestBody: { maxMessages: 10 } });
  assert.equal(r2.data.receivedMessages.length, 1);
  assert.equal(r2.data.receivedMessages[0].message.messageId, id);
  assert.notEqual(r2.data.receivedMessages[0].ackId, r1.data.receivedMessages[0].ackId);
  await ps.projects.subscriptions.acknowledge({ subscription: `${P}/subscriptions/orders-sub`, requestBody: { ackIds: [r2.data.receivedMessages[0].ackId] } });
});

test('modifyAckDeadline: extend from now, 0 = nack, range checked', async () => {
  const sub = `${P}/subscriptions/orders-sub`;
  await ps.projects.topics.publish({ topic: `${P}/topics/orders`, requestBody: { messages: [{ data: b64('m') }] } });
  const r1 = await ps.projects.subscriptions.pull({ subscription: sub, requestBody: { maxMessages: 1 } });
  const ackId = r1.data.receivedMessages[0].ackId;
  await ps.projects.subscriptions.modifyAckDeadline({ subscription: sub, requestBody: { ackIds: [ackId], ackDeadlineSeconds: 1 } });
  await sleep(1300);
  const r2 = await ps.projects.subscriptions.pull({ subscription: sub, requestBody: { maxMessages: 1 } });
  assert.equal(r2.data.receivedMessages.length, 1, 'redelivered after the 1 s deadline');
  await ps.projects.subscriptions.modifyAckDeadline({ subscription: sub, requestBody: { ackIds: [r2.data.receivedMessages[0].ackId], ackDeadlineSeconds: 0 } });
  const r3 = await ps.projects.subscriptions.pull({ subscription: sub, requestBody: { maxMessages: 1 } });
  assert.equal(r3.data.receivedMessages.length, 1, 'nacked message comes back at once');
  await assert.rejects(ps.projects.subscriptions.modifyAckDeadline({ subscription: sub, requestBody: { ackIds: [r3.data.receivedMessages[0].ackId], ackDeadlineSeconds: 601 } }), (e) => status(e) === 400);
  await ps.projects.subscriptions.acknowledge({ subscription: sub, requestBody: { ackIds: [r3.data.receivedMessages[0].ackId] } });
});

test('dead-letter policy: deliveryAttempt counts and forwarding after maxDeliveryAttempts', async () => {
  await ps.projects.topics.create({ name: `${P}/topics/dlq` });
  await ps.projects.subscriptions.create({ name: `${P}/subscriptions/dlq-sub`, requestBody: { topic: `${P}/topics/dlq` } });
  await ps.projects.topics.create({ name: `${P}/topics/work` });
  await ps.projects.subscriptions.create({ name: `${P}/subscriptions/work-sub`, requestBody: { topic: `${P}/topics/work`, deadLetterPolicy: { deadLetterTopic: `${P}/topics/dlq`, maxDeliveryAttempts: 5 } } });
  await ps.projects.topics.publish({ topic: `${P}/topics/work`, requestBody: { messages: [{ data: b64('poison') }] } });
  for (let i = 1; i <= 5; i++) {
    const r = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/work-sub`, requestBody: { maxMessages: 1 } });
    assert.equal(r.data.receivedMessages[0].deliveryAttempt, i);
    await ps.projects.subscriptions.modifyAckDeadline({ subscription: `${P}/subscriptions/work-sub`, requestBody: { ackIds: [r.data.receivedMessages[0].ackId], ackDeadlineSeconds: 0 } });
  }
  const none = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/work-sub`, requestBody: { maxMessages: 1 } });
  assert.deepEqual(none.data, {});
  const dl = await ps.projects.subscriptions.pull({ subscription: `${P}/subscriptions/dlq-sub`, requestBody: { maxMessages: 1 } });
  assert.equal(Buffer.from(dl.data.receivedMessages[0].message.data, 'base64').toString(), 'poison');
  assert.equal(dl.data.receivedMessages[0].message.attributes.CloudPubSubDeadLetterSourceDeliveryCount, '5');
});

test('wire: %3A verbs, $alt query, error shape, 401 without token', async () => {
  const tok = (await call(emu.url + '/computeMetadata/v1/instance/service-accounts/default/token', 'GET', undefined, { 'Metadata-Flavor': 'Google' })).json.access_token;
  const h = { authorization: 'Bearer ' + tok };
  const r = await call(`${emu.url}/v1/${P}/topics/orders%3Apublish?$alt=json%3Benum-encoding=int&prettyPrint=false`, 'POST', { messages: [{ data: b64('x') }] }, h);
  assert.equal(r.status, 200);
  const bad = await call(`${emu.url}/v1/${P}/subscriptions/orders-sub:pull`, 'POST', '{not json', h);
  assert.equal(bad.status, 400);
  assert.deepEqual(Object.keys(bad.json.error).sort(), ['code', 'message', 'status']);
  assert.equal(bad.json.error.status, 'INVALID_ARGUMENT');
  const zero = await call(`${emu.url}/v1/${P}/subscriptions/orders-sub:pull`, 'POST', { maxMessages: 0 }, h);
  assert.equal(zero.status, 400);
  const noauth = await call(`${emu.url}/v1/${P}/topics/orders`, 'GET');
  assert.equal(noauth.status, 401);
  assert.equal(noauth.json.error.status, 'UNAUTHENTICATED');
  const big = await call(`${emu.url}/v1/${P}/subscriptions/orders-sub:acknowledge`, 'POST', { ackIds: Array.from({ length: 50000 }, (_, i) => 'xx-' + (1e9 + i) + '-1') }, h);
  assert.equal(big.status, 400, 'ack body over 512 KiB');
});
