'use strict';
// JSON.parse, but an integer past 2^53 is a BigInt with the digits the text had. BigQuery keeps
// INT64 values exact (tabledata.list returns them as strings); JSON.parse would round
// 9007199254740993 to 9007199254740992 before the schema saw it. JSON.parse's reviver sees the
// source text only from Node 21 (the "source text access" proposal); Debian 12 ships Node 18 and
// the machines Node 20, so this reads the text itself (~5x JSON.parse's time), and only when it
// could matter: a number token starts after ':', ',' or '[' (or is the whole text), and a body
// with no run of 16 digits there holds no such integer (2^53 has 16 digits) and goes to
// JSON.parse. Digits inside strings (message ids as insertIds) follow a '"' and do not count.
//
// parse(text) returns what JSON.parse returns (objects, arrays, strings, numbers, booleans,
// null), except that an integer token (no fraction, no exponent) outside the safe range (2^53
// or more in magnitude) is a BigInt. Throws a SyntaxError on text JSON.parse would refuse.

const LONG_DIGITS = /(?:^|[:,[])[ \t\n\r]*-?\d{16}/;
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const WS = /[ \t\n\r]*/y;

function parse(text) {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text);
  let pos = 0;
  const fail = (what) => { throw new SyntaxError(`${what} in JSON at position ${pos}`); };
  const ws = () => { WS.lastIndex = pos; WS.exec(text); pos = WS.lastIndex; };
  const string = () => {
    // The end quote is the first one not escaped; JSON.parse decodes the escapes and refuses
    // raw control characters, as it would in the whole text.
    let i = pos + 1;
    for (;;) {
      const q = text.indexOf('"', i);
      if (q < 0) fail('Unterminated string');
      let bs = 0;
      for (let k = q - 1; text.charCodeAt(k) === 92; k--) bs++;
      if (bs % 2 === 0) {
        const s = JSON.parse(text.slice(pos, q + 1));
        pos = q + 1;
        return s;
      }
      i = q + 1;
    }
  };
  const value = (depth) => {
    if (depth > 1000) fail('Nesting too deep');
    ws();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const o = {};
      ws();
      if (text[pos] === '}') { pos++; return o; }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('Expected a property name');
        const k = string();
        ws();
        if (text[pos] !== ':') fail("Expected ':'");
        pos++;
        const v = value(depth + 1);
        // a "__proto__" key is an own property, as JSON.parse makes it
        if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
        else o[k] = v;
        ws();
        if (text[pos] === ',') { pos++; continue; }
        if (text[pos] === '}') { pos++; return o; }
        fail("Expected ',' or '}'");
      }
    }
    if (c === '[') {
      pos++;
      const a = [];
      ws();
      if (text[pos] === ']') { pos++; return a; }
      for (;;) {
        a.push(value(depth + 1));
        ws();
        if (text[pos] === ',') { pos++; continue; }
        if (text[pos] === ']') { pos++; return a; }
        fail("Expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (c === '-' || (c >= '0' && c <= '9')) {
      NUMBER.lastIndex = pos;
      const m = NUMBER.exec(text);
      if (!m) fail('Invalid number');
      pos = NUMBER.lastIndex;
      const n = Number(m[0]);
      if (!m[1] && !m[2] && !Number.isSafeInteger(n)) return BigInt(m[0]);
      return n;
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, pos)) { pos += word.length; return v; }
    }
    return fail(pos < text.length ? `Unexpected token ${JSON.stringify(c)}` : 'Unexpected end of JSON input');
  };
  const v = value(0);
  ws();
  if (pos !== text.length) fail('Unexpected non-whitespace character after JSON');
  return v;
}

module.exports = { parse };
