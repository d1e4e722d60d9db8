#!/usr/bin/env node
// A small gRPC server for tests/unit/test_grpc_channel.c: messages are raw bytes (no protobuf), so
// the C channel is tested on its own. Two ports, printed as "grpc=<port> raw=<port>":
//  - grpc: @grpc/grpc-js (the library Google's Node clients use) serving /test.T/Echo (unary:
//    the request back; a request "status:<code>:<message>" fails with that status, before any
//    message, which grpc-js sends as a Trailers-Only reply) and /test.T/Chat (bidi: each message
//    back; "drain" makes the server send GOAWAY (server.drain) and go on; "stall" stops
//    answering; "end" ends the call OK).
//  - raw: Node's http2 speaking gRPC by hand for what grpc-js will not do: /raw/NoStatus (a reply
//    without grpc-status), /raw/Headers (the request's headers back, as JSON), /raw/Drop (the connection dropped mid-call), /raw/Huge (a message
//    prefix announcing 4 GiB), /raw/Refuse (GOAWAY whose last stream id
//    is the one before it), /raw/Details (grpc-status-details-bin, unpadded base64).
//  - with `--tls CERT KEY [CERT2 KEY2]`: the grpc-js service again over TLS (ALPN h2) with each
//    certificate, printed as "tls=<port> tls2=<port>" (0 when not asked for).
// Needs tests/emulator/conformance's node_modules (npm ci there).
'use strict';
const path = require('path');
const http2 = require('http2');
const mods = path.join(__dirname, '..', 'emulator', 'conformance', 'node_modules');
const grpc = require(path.join(mods, '@grpc', 'grpc-js'));

const fs = require('fs');
const raw = (b) => b;
const tlsArgs = process.argv.indexOf('--tls') >= 0 ?
  process.argv.slice(process.argv.indexOf('--tls') + 1) : [];
const server = new grpc.Server();
let grpcPort = 0;
server.addService({
  Echo: {path: '/test.T/Echo', requestStream: false, responseStream: false,
         requestSerialize: raw, requestDeserialize: raw,
         responseSerialize: raw, responseDeserialize: raw},
  Chat: {path: '/test.T/Chat', requestStream: true, responseStream: true,
         requestSerialize: raw, requestDeserialize: raw,
         responseSerialize: raw, responseDeserialize: raw},
}, {
  Echo(call, cb) {
    const m = /^status:(\d+):(.*)$/s.exec(call.request.toString());
    if (m) return cb({code: Number(m[1]), details: m[2]});
    cb(null, call.request);
  },
  Chat(call) {
    let stalled = false;
    call.on('data', (d) => {
      const t = d.toString();
      if (t === 'drain') server.drain(`127.0.0.1:${grpcPort}`, 10000);
      if (t === 'stall') stalled = true;
      if (t === 'end') return call.end();
      if (!stalled) call.write(d);
    });
    call.on('end', () => { if (!stalled) call.end(); });
    call.on('error', () => {});
  },
});

function frame(buf) {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(buf.length, 1);
  return Buffer.concat([h, buf]);
}

const rawServer = http2.createServer();
const rawSockets = new Set();   // http2 hides a session's socket: keep them from 'connection'
rawServer.on('connection', (sock) => {
  rawSockets.add(sock);
  sock.on('close', () => rawSockets.delete(sock));
});
rawServer.on('stream', (st, headers) => {
  st.on('error', () => {});
  const p = headers[':path'];
  if (p === '/raw/NoStatus') {
    st.respond({':status': 200, 'content-type': 'application/grpc'});
    st.end(frame(Buffer.from('x')));
  } else if (p === '/raw/Drop') {
    st.respond({':status': 200, 'content-type': 'application/grpc'});
    st.write(frame(Buffer.from('first')));
    setTimeout(() => { for (const sock of rawSockets) sock.destroy(); }, 100);
  } else if (p === '/raw/Headers') {
    // the request's headers back as one message: what the client sent, checked by the test
    st.respond({':status': 200, 'content-type': 'application/grpc'}, {waitForTrailers: true});
    st.on('wantTrailers', () => st.sendTrailers({'grpc-status': '0'}));
    const h = {};
    for (const k of ['content-type', 'te', 'authorization', 'x-goog-request-params',
                     'grpc-timeout', 'user-agent', ':authority', ':scheme', ':method']) {
      h[k] = headers[k];
    }
    st.end(frame(Buffer.from(JSON.stringify(h))));
  } else if (p === '/raw/Refuse') {
    // (Node takes a last stream id of 0 as "the last one processed": name the one before)
    st.session.goaway(http2.constants.NGHTTP2_NO_ERROR, Math.max(1, st.id - 2));
  } else if (p === '/raw/Huge') {
    st.respond({':status': 200, 'content-type': 'application/grpc'});
    st.write(Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  } else if (p === '/raw/Details') {
    st.respond({':status': 200, 'content-type': 'application/grpc',
                'grpc-status': '3', 'grpc-message': 'bad%20row%3A%201%zz',
                'grpc-status-details-bin': 'CAMSA2JhZA'}, {endStream: true});
  } else {
    st.respond({':status': 404});
    st.end();
  }
});

function bind(creds) {
  return new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', creds,
    (err, port) => err ? reject(err) : resolve(port)));
}
function tlsCreds(cert, key) {
  return grpc.ServerCredentials.createSsl(null,
    [{cert_chain: fs.readFileSync(cert), private_key: fs.readFileSync(key)}], false);
}
(async () => {
  grpcPort = await bind(grpc.ServerCredentials.createInsecure());
  const tls = tlsArgs.length >= 2 ? await bind(tlsCreds(tlsArgs[0], tlsArgs[1])) : 0;
  const tls2 = tlsArgs.length >= 4 ? await bind(tlsCreds(tlsArgs[2], tlsArgs[3])) : 0;
  rawServer.listen(0, '127.0.0.1', () => {
    process.stdout.write(`grpc=${grpcPort} raw=${rawServer.address().port} tls=${tls} ` +
                         `tls2=${tls2}\n`);
  });
})().catch((e) => { console.error(e); process.exit(1); });
process.stdin.on('end', () => process.exit(0));   // the test's end closes our stdin
process.stdin.resume();
