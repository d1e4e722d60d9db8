/* json_lua.cpp - an event's JSON text to Lua values, through simdjson's DOM parser (Debian's
 * libsimdjson). The fast path of the batch loop's decode: lua-cjson stays the decoder of record.
 *
 * Why not lua-cjson alone: it grows every table key by key (lua_newtable, then a rehash at 1, 2,
 * 4, 8 ... members), and its tokenizer runs a byte at a time; simdjson parses the text first and
 * knows each object's and array's size, so every table is created at its final size. On the live
 * corpus this decodes in ~0.6x lua-cjson's time (tests/bench/run measures the whole path).
 *
 * Same values as lua-cjson, or none, but for integers: the fast path only answers where its
 * result is what lua-cjson (configured as scripts/bepipe/host.lua configures it) would return,
 * and declines everything else, which the caller then decodes with lua-cjson: its result or its
 * error message, unchanged. The exception: an integer of 2^53 or more in magnitude, which
 * lua-cjson rounds to a double past 2^53, is pushed exactly, as an int64_t cdata made by
 * bepipe.int64 (scripts/bepipe/int64.lua); bp_json_lua_inexact finds such integers in text the
 * fast path declined, so that the batch loop dead-letters the event instead of changing them.
 * 2^53 itself is a cdata too, so that a double of magnitude 2^53 in a row is one the text wrote
 * with a fraction or an exponent (9007199254740993.0 is that double): the row writer gives it
 * ".0" and an INT64 column refuses it rather than store a rounded value.
 * A fraction the double loses: from 2^52 to 2^53 in magnitude doubles are 1 apart, so
 * 4503599627370496.5 reads as the integer 4503599627370496, which an INT64 column would store as
 * if the event had written it. Such a number is pushed as that double all the same (scripts and
 * FLOAT64 columns see what they always saw: a number, the same double), and its text is noted
 * (bp_json_lua_lost_text) for the row writer, which writes that text for the double: the row
 * carries the event's value, a FLOAT64 column reads the same double from it, and the schema
 * check refuses it for an INT64 column naming the field (it is not an integer on its digits).
 * Why a note by value and not a distinct Lua value (a cdata): a cdata would change what every
 * script sees of such a number (type(), string.format, arithmetic, lua-cjson's encode) where
 * the number is no concern of an INT64 column; the note costs one compare per double on the
 * common path. What the value alone cannot tell: an exact integer equal to a noted double in
 * the same event is written as the noted text too (an INT64 column refuses it: dead-lettered,
 * never changed).
 * Below 2^52 too a text can say more than its double: 1.9999999999999999 reads as 2 (an INT64
 * column would store 2), 1234567.8912345678 as the double whose shortest text is
 * 1234567.8912345679 (a NUMERIC column would store that). Such a text is noted the same way.
 * Which texts: a double carries any decimal of 15 significant digits exactly (it reads back
 * as the same decimal from its shortest text), so only a number written with a fraction or an
 * exponent and more than 15 significant digits can be one; it is noted when its decimal value
 * is not that of the shortest text of its double. The DOM keeps no text, so the text is
 * scanned for such numbers after the walk, and only when the walk met a double (a whole
 * number that is not one is an exact integer or an int64 cdata) and the text holds 16 digits
 * in a row (long_digit_run: 8 bytes at a time).
 * An integer zero written `-0` is -0.0 for lua-cjson, 0 in simdjson's DOM: such text is parsed
 * again with each `-0` written `-0.0` (rare; a string holding "-0" is left as it is).
 * Declined: text that simdjson refuses (invalid JSON, and also what lua-cjson takes but
 * simdjson does not: invalid UTF-8, raw control characters in strings, `1.`, integers past
 * 64 bits, numbers past the double range), nesting deeper than lua-cjson's limit, documents over
 * BP_JSON_LUA_BIG_MAX bytes and a top level that is not an object.
 * tests/unit/test_json_lua.c and tests/fuzz/fuzz_json_lua.c compare the two. */
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <cstring>

extern "C" {
#include "bp_ffi.h"
#include "json_lua.h"
#include "json_row.h"
#include "schema_scalar.h"
#include <lauxlib.h>
#include <lua.h>
}

using namespace simdjson;

namespace {

/* One parser per thread (the daemon's loop is one thread; the watchdog never decodes). Its
 * buffers are reused from one document to the next. */
thread_local dom::parser *parser;
/* The text with SIMDJSON_PADDING readable bytes after it, which simdjson needs; reused. */
thread_local char *pad_buf;
thread_local size_t pad_cap;

struct walk {
    lua_State *L;
    bool zero_int;    /* an integer 0 was pushed: it may have been written -0 */
    bool doubles;     /* a number with a fraction or an exponent was pushed */
    int int64;        /* stack index of bepipe.int64 (scripts/bepipe/int64.lua), 0 if none */
};

/* 2^53: every integer below it in magnitude is a double that only that integer's text gives;
 * from it on one is not (9007199254740993.0 is the double 2^53), and an integer goes as an
 * int64_t cdata so that it reaches the row unchanged */
const uint64_t EXACT = 9007199254740992ull;

/* The doubles of the last text decoded (bp_json_lua_push, bp_json_lua_inexact) whose text says
 * more than the double, with that text. As many as the event has (a writer of printf's %.17g,
 * such as jansson, gives one for most doubles: 0.41000000000000003): only a longer text, or no
 * memory, declines the event (and then the lua-cjson path dead-letters it, naming the field). */
struct lost_number {
    double v;
    unsigned char len;
    char text[111];
};
/* Past this many the table is searched sorted (lost_sort), and freed after the event. */
const size_t LOST_LINEAR = 16;
thread_local lost_number *lost;
thread_local size_t nlost, lost_cap;
thread_local bool lost_sorted;

/* The bits of a double: -0.0 is not 0.0 (a text that underflows to 0 is no -0) */
inline uint64_t double_bits(double a)
{
    uint64_t b;
    memcpy(&b, &a, sizeof(b));
    return b;
}

/* The same double, bit for bit */
inline bool same_double(double a, double b)
{
    return double_bits(a) == double_bits(b);
}

/* Forgets the notes of the last text. */
void lost_clear()
{
    nlost = 0;
    lost_sorted = true;
    if (lost_cap > 64 * LOST_LINEAR) {
        free(lost);
        lost = NULL;
        lost_cap = 0;
    }
}

/* Notes that text p[0..n) was decoded as v, a lost fraction; false when it cannot be noted. */
bool note_lost(double v, const char *p, size_t n)
{
    if (nlost <= LOST_LINEAR)
        for (size_t i = 0; i < nlost; i++)
            if (same_double(lost[i].v, v))
                return true;    /* the first text of the double stands for it */
    /* past LOST_LINEAR a repeated double is kept: lost_sort's stable order puts its first
     * text first */
    if (n > sizeof(lost[0].text))
        return false;
    if (nlost == lost_cap) {
        size_t cap = lost_cap ? 2 * lost_cap : LOST_LINEAR;
        lost_number *grown = (lost_number *)realloc(lost, cap * sizeof(*lost));
        if (!grown)
            return false;
        lost = grown;
        lost_cap = cap;
    }
    lost[nlost].v = v;
    lost[nlost].len = (unsigned char)n;
    memcpy(lost[nlost].text, p, n);
    nlost++;
    lost_sorted = nlost <= LOST_LINEAR;
    return true;
}

struct free_text {
    void operator()(char *p) const { free(p); }
};

inline bool number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* The decimal value of the number text s[0..n) (JSON syntax, or what printf's %g writes) as
 * its significant digits, without leading or trailing zeros, into dig (*nd of them, at most
 * cap: false past it) and the power of ten of the first (*exp10); zero has none. */
bool decimal_of(const char *s, size_t n, char *dig, size_t cap, size_t *nd, long *exp10)
{
    size_t i = n && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    /* the value is 0.DIGITS times 10^point (times 10^exp): point counts the digits before the
     * decimal point from the first significant one, or less the zeros after it */
    long point = 0;
    bool seen_dot = false, started = false;
    size_t k = 0, last = 0;
    for (; i < n && s[i] != 'e' && s[i] != 'E'; i++) {
        char c = s[i];
        if (c == '.') {
            seen_dot = true;
            continue;
        }
        if (!started && c == '0') {
            if (seen_dot)
                point--;
            continue;
        }
        started = true;
        if (!seen_dot)
            point++;
        if (k == cap)
            return false;
        dig[k++] = c;
        if (c != '0')
            last = k;
    }
    long exp = 0;
    if (i < n) {
        size_t j = i + 1;
        bool neg = j < n && s[j] == '-';
        j += j < n && (s[j] == '-' || s[j] == '+');
        for (; j < n; j++)
            if (exp < 100000)
                exp = exp * 10 + (s[j] - '0');
        exp = neg ? -exp : exp;
    }
    *nd = last;
    *exp10 = started ? point - 1 + exp : 0;
    return true;
}

/* True when the number text tok[0..len) (valid JSON, with a fraction or an exponent) says
 * more than its double *v (set, read as strtod reads it, when more than 15 significant
 * digits): its decimal value is not that of the double's shortest text (bp_json_number_text,
 * what the row writer writes). */
bool says_more(const char *tok, size_t len, double *v)
{
    int sig = 0;
    bool started = false;
    for (size_t i = 0; i < len && tok[i] != 'e' && tok[i] != 'E'; i++) {
        char c = tok[i];
        if (c >= '1' && c <= '9')
            started = true;
        if (started && c >= '0' && c <= '9')
            sig++;
    }
    if (sig <= 15)
        return false;
    char buf[64];
    std::unique_ptr<char, free_text> big;
    char *t = buf;
    if (len >= sizeof(buf)) {
        big.reset((char *)malloc(len + 1));
        if (!big)
            return true;    /* unsure: noted, or declined when it cannot be */
        t = big.get();
    }
    memcpy(t, tok, len);
    t[len] = 0;
    *v = strtod(t, NULL);
    char sh[40];
    size_t shn = bp_json_number_text(sh, sizeof(sh), *v);
    if (shn == 0)
        return true;
    /* the text's digits, at most 17 of them compared: a text that differs from the shortest
     * in fewer would not read as the same double */
    char d1[24], d2[24];
    size_t n1, n2;
    long e1, e2;
    if (!decimal_of(sh, shn, d2, sizeof(d2), &n2, &e2))
        return true;
    if (!decimal_of(tok, len, d1, sizeof(d1), &n1, &e1))
        return true;    /* more than 24 significant digits: none of them zeros at the end */
    return n1 != n2 || e1 != e2 || memcmp(d1, d2, n1) != 0;
}

/* False when the text p[0..n) holds no 16 bytes in a row from '.' to '9' (digits, '.', '/'),
 * so no number of more than 15 significant digits: such a run always covers 8 bytes at an
 * offset that is a multiple of 8, which are tested 8 at a time. The cheap look that spares the
 * common event (short numbers) note_texts' scan. */
bool long_digit_run(const char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        /* a byte below '.' (0x2e), or above '9' (0x39), or with the high bit set */
        uint64_t below = (x - ones * 0x2e) & ~x & high;
        uint64_t above = ((x + ones * (127 - 0x39)) | x) & high;
        if (!(below | above))
            return true;
    }
    return false;
}

/* Notes every number of the valid JSON text p[0..n) (outside strings) that says more than its
 * double; false when one cannot be noted. */
bool note_texts(const char *p, size_t n)
{
    size_t at = 0;
    while (at < n) {
        const char *q = (const char *)memchr(p + at, '"', n - at);
        size_t stop = q ? (size_t)(q - p) : n;
        /* numbers between strings */
        while (at < stop) {
            char c = p[at];
            if (c == '-' || (c >= '0' && c <= '9')) {
                size_t b = at;
                bool frac = false;
                while (at < stop && number_char(p[at])) {
                    frac |= p[at] == '.' || p[at] == 'e' || p[at] == 'E';
                    at++;
                }
                double v;
                if (frac && at - b > 15 && says_more(p + b, at - b, &v) &&
                    !note_lost(v, p + b, at - b))
                    return false;
            } else {
                at++;
            }
        }
        if (!q)
            break;
        /* past the string */
        size_t j = stop + 1;
        for (;;) {
            const char *e = (const char *)memchr(p + j, '"', n - j);
            if (!e)
                return true;
            size_t k = (size_t)(e - p), bs = 0;
            while (k - bs > stop + 1 && p[k - bs - 1] == '\\')
                bs++;
            j = k + 1;
            if (bs % 2 == 0)
                break;
        }
        at = j;
    }
    return true;
}

/* Pushes the integer (negative when neg) of magnitude u >= 2^53 as an int64_t cdata made by
 * bepipe.int64(hi, lo); false when there is no such function. */
bool push_big(walk &w, uint64_t u, bool neg)
{
    if (!w.int64)
        return false;
    uint64_t bits = neg ? (uint64_t)0 - u : u;
    lua_pushvalue(w.L, w.int64);
    lua_pushnumber(w.L, (lua_Number)(uint32_t)(bits >> 32));
    lua_pushnumber(w.L, (lua_Number)(uint32_t)bits);
    lua_call(w.L, 2, 1);
    return true;
}

/* Pushes e and everything in it; false when past the depth (nothing pushed for e then, the
 * caller pops what it pushed). Lua memory errors unwind through here: nothing below holds a
 * resource. */
bool push(walk &w, dom::element e, int depth)
{
    lua_State *L = w.L;
    switch (e.type()) {
    case dom::element_type::OBJECT: {
        if (depth > BP_JSON_LUA_DEPTH || !lua_checkstack(L, 6))
            return false;
        dom::object o = e.get_object().value_unsafe();
        lua_createtable(L, 0, (int)o.size());
        for (dom::key_value_pair kv : o) {
            lua_pushlstring(L, kv.key.data(), kv.key.size());
            if (!push(w, kv.value, depth + 1)) {
                lua_pop(L, 2);
                return false;
            }
            lua_rawset(L, -3);    /* a repeated key: the last one wins, as in lua-cjson */
        }
        return true;
    }
    case dom::element_type::ARRAY: {
        if (depth > BP_JSON_LUA_DEPTH || !lua_checkstack(L, 6))
            return false;
        dom::array a = e.get_array().value_unsafe();
        lua_createtable(L, (int)a.size(), 0);
        int i = 1;
        for (dom::element v : a) {
            if (!push(w, v, depth + 1)) {
                lua_pop(L, 1);
                return false;
            }
            lua_rawseti(L, -2, i++);
        }
        return true;
    }
    case dom::element_type::STRING: {
        std::string_view s = e.get_string().value_unsafe();
        lua_pushlstring(L, s.data(), s.size());
        return true;
    }
    case dom::element_type::INT64: {
        int64_t v = e.get_int64().value_unsafe();
        w.zero_int |= v == 0;
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        if (mag >= EXACT)
            return push_big(w, mag, v < 0);
        lua_pushnumber(L, (lua_Number)v);
        return true;
    }
    case dom::element_type::UINT64:
        /* past INT64_MAX: no INT64 column takes it, and a FLOAT64 one its double; a uint64_t
         * cdata would expose scripts to LuaJIT 2.1.0-beta3's compiled uint64_t -> double
         * conversion, which rounds twice (tests/lua/test_int64.lua) */
        lua_pushnumber(L, (lua_Number)e.get_uint64().value_unsafe());
        return true;
    case dom::element_type::DOUBLE: {
        /* a fraction or an exponent in the text */
        w.doubles = true;
        lua_pushnumber(L, e.get_double().value_unsafe());
        return true;
    }
    case dom::element_type::BOOL:
        lua_pushboolean(L, e.get_bool().value_unsafe());
        return true;
    case dom::element_type::NULL_VALUE:
        lua_pushlightuserdata(L, NULL);    /* cjson.null */
        return true;
    }
    return false;
}

/* True when the text may hold a number written -0 (a '-' then '0' and no more digits, after a
 * ':', ',' or '['): a quick look before minus_zero_rewrite's exact one. Strings can match too. */
bool has_minus_zero(const char *p, size_t n)
{
    for (const char *q = (const char *)memchr(p, '-', n); q;
         q = (const char *)memchr(q + 1, '-', n - (size_t)(q + 1 - p))) {
        size_t at = (size_t)(q - p);
        if (at + 1 >= n || q[1] != '0')
            continue;
        char next = at + 2 < n ? q[2] : ' ';
        if (next >= '0' && next <= '9')
            continue;
        const char *b = q;
        while (b > p && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r'))
            b--;
        if (b > p && (b[-1] == ':' || b[-1] == ',' || b[-1] == '['))
            return true;
    }
    return false;
}

/* Counts the numbers written `-0` (an integer zero: no fraction, no exponent) in the JSON text
 * p[0..n) that simdjson accepted, outside strings; with out (n + 2 * count + SIMDJSON_PADDING
 * bytes) also writes the text with each written `-0.0`, which simdjson reads as -0.0, and the
 * padding. */
size_t minus_zero_rewrite(const char *p, size_t n, char *out)
{
    size_t count = 0, o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            /* valid JSON: the string ends at the first quote no backslash escapes */
            size_t j = i + 1;
            while (j < n && p[j] != '"')
                j += p[j] == '\\' ? 2 : 1;
            if (j >= n)
                j = n - 1;    /* not for valid JSON; never past the text */
            if (out)
                memcpy(out + o, p + i, j + 1 - i);
            o += j + 1 - i;
            i = j;
            continue;
        }
        if (out)
            out[o] = c;
        o++;
        /* a sign that starts a number (an exponent's follows an 'e'), then 0, then no digit,
         * fraction or exponent */
        if (c == '-' && i + 1 < n && p[i + 1] == '0' && (i == 0 || (p[i - 1] != 'e' &&
                                                                   p[i - 1] != 'E'))) {
            char next = i + 2 < n ? p[i + 2] : ' ';
            if ((next >= '0' && next <= '9') || next == '.' || next == 'e' || next == 'E')
                continue;
            if (out)
                memcpy(out + o, "0.0", 3);
            o += 3;
            i++;
            count++;
        }
    }
    if (out)
        memset(out + o, 0, SIMDJSON_PADDING);
    return count;
}

/* A deleter for malloc'd text (a functor: a function pointer's call is a C++ UBSan check that
 * a C link lacks the runtime of). */
bool padded_copy(const char *p, size_t n)
{
    if (n + SIMDJSON_PADDING > pad_cap) {
        size_t cap = n + SIMDJSON_PADDING;
        cap = cap < 4096 ? 4096 : cap + cap / 2;
        char *nb = (char *)realloc(pad_buf, cap);
        if (!nb)
            return false;
        pad_buf = nb;
        pad_cap = cap;
    }
    memcpy(pad_buf, p, n);
    memset(pad_buf + n, 0, SIMDJSON_PADDING);
    return true;
}

/* The scanner of bp_json_lua_inexact: one open object or array of the text. */
struct frame {
    bool obj;
    const char *key;    /* the member being read (obj), or NULL before its key */
    size_t klen;
    long index;         /* the element being read (array) */
};

/* True when the number token p[0..n) is an integer (no fraction, no exponent) past 2^53 in
 * magnitude that an int64_t holds: lua-cjson rounds it to a double, the fast path does not.
 * (2^53 itself is a double lua-cjson gives exactly; the row writer gives it ".0" all the same,
 * so an INT64 column refuses it, a FLOAT64 one takes it.) */
bool inexact_integer(const char *p, size_t n)
{
    bool neg = n && p[0] == '-';
    size_t i = neg ? 1 : 0;
    uint64_t u = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (u > UINT64_MAX / 10 || (u == UINT64_MAX / 10 && d > UINT64_MAX % 10))
            return false;    /* past 64 bits: a double either way */
        u = u * 10 + d;
    }
    return u > EXACT && u <= (uint64_t)INT64_MAX + (neg ? 1 : 0);
}

/* True when p[0..n) is a number as JSON writes one (-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?):
 * lua-cjson also reads some that are not (`1.`), which no row may carry. */
bool json_number(const char *p, size_t n)
{
    size_t i = n && p[0] == '-' ? 1 : 0;
    auto digits = [&]() {
        size_t b = i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        return i - b;
    };
    if (i < n && p[i] == '0')
        i++;
    else if (digits() == 0)
        return false;
    if (i < n && p[i] == '.') {
        i++;
        if (digits() == 0)
            return false;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (digits() == 0)
            return false;
    }
    return i == n;
}

/* Writes the path of the innermost value (`a.b[2]`) to out. */
void path_text(const frame *st, int depth, char *out, size_t size)
{
    size_t n = 0;
    out[0] = 0;
    for (int d = 0; d < depth && n + 1 < size; d++) {
        int w = st[d].obj ? snprintf(out + n, size - n, "%s%.*s", n ? "." : "",
                                     (int)(st[d].klen > 64 ? 64 : st[d].klen),
                                     st[d].key ? st[d].key : "")
                          : snprintf(out + n, size - n, "[%ld]", st[d].index);
        if (w < 0)
            return;
        n += (size_t)w;
    }
}

} // namespace

/* See json_lua.h. */
extern "C" int
bp_json_lua_push(lua_State *L, const char *p, size_t n)
{
    size_t i = 0;
    lost_clear();
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    if (i == n || p[i] != '{' || n > BP_JSON_LUA_BIG_MAX)
        return 0;
    if (!parser) {
        parser = new (std::nothrow) dom::parser(BP_JSON_LUA_MAX);
        if (!parser)
            return 0;
    }
    /* a larger document gets a parser of its own, freed after it: the reused parser's memory
     * follows the largest document it has seen */
    std::unique_ptr<dom::parser> big;
    std::unique_ptr<char, free_text> big_text;
    dom::parser *use = parser;
    const char *text = pad_buf;
    if (n > BP_JSON_LUA_MAX) {
        big.reset(new (std::nothrow) dom::parser(n));
        big_text.reset((char *)malloc(n + SIMDJSON_PADDING));
        if (!big || !big_text)
            return 0;
        memcpy(big_text.get(), p, n);
        memset(big_text.get() + n, 0, SIMDJSON_PADDING);
        use = big.get();
        text = big_text.get();
    } else if (!padded_copy(p, n)) {
        return 0;
    } else {
        text = pad_buf;
    }
    dom::element root;
    if (use->parse(text, n, false).get(root) != SUCCESS)
        return 0;
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 8))
        return 0;
    lua_getfield(L, LUA_REGISTRYINDEX, "bepipe.int64");
    walk w = { L, false, false, lua_isfunction(L, -1) ? top + 1 : 0 };
    if (!push(w, root, 1) ||
        (w.doubles && long_digit_run(text, n) && !note_texts(text, n))) {
        lua_settop(L, top);
        lost_clear();
        return 0;
    }
    size_t zeros = w.zero_int && has_minus_zero(p, n) ? minus_zero_rewrite(p, n, NULL) : 0;
    if (zeros) {
        /* parsed again with each -0 written -0.0; a parser of its own when that passes the
         * reused one's capacity */
        lua_settop(L, top + 1);
        size_t n2 = n + 2 * zeros;
        std::unique_ptr<char, free_text> text2((char *)malloc(n2 + SIMDJSON_PADDING));
        std::unique_ptr<dom::parser> own;
        if (!text2)
            return lua_settop(L, top), 0;
        minus_zero_rewrite(p, n, text2.get());
        lost_clear();
        w.doubles = false;
        if (n2 > use->max_capacity()) {
            own.reset(new (std::nothrow) dom::parser(n2));
            if (!own)
                return lua_settop(L, top), 0;
            use = own.get();
        }
        if (use->parse(text2.get(), n2, false).get(root) != SUCCESS || !push(w, root, 1) ||
            (w.doubles && long_digit_run(text2.get(), n2) && !note_texts(text2.get(), n2))) {
            lua_settop(L, top);
            lost_clear();
            return 0;
        }
    }
    lua_replace(L, top + 1);    /* the value where bepipe.int64 was */
    lua_settop(L, top + 1);
    return 1;
}

/* See json_lua.h. */
extern "C" const char *
bp_json_lua_lost_text(double v, size_t *n)
{
    if (nlost == 0)
        return NULL;
    if (nlost <= LOST_LINEAR) {
        for (size_t i = 0; i < nlost; i++)
            if (same_double(lost[i].v, v)) {
                *n = lost[i].len;
                return lost[i].text;
            }
        return NULL;
    }
    /* many (a row writer asks for each of the row's doubles): sorted once, searched by halves */
    if (!lost_sorted) {
        std::stable_sort(lost, lost + nlost, [](const lost_number &a, const lost_number &b) {
            return double_bits(a.v) < double_bits(b.v);
        });
        lost_sorted = true;
    }
    uint64_t key = double_bits(v);
    const lost_number *e = std::lower_bound(lost, lost + nlost, key,
        [](const lost_number &a, uint64_t k) { return double_bits(a.v) < k; });
    if (e == lost + nlost || double_bits(e->v) != key)
        return NULL;
    *n = e->len;
    return e->text;
}

/* See json_lua.h. */
extern "C" int
bp_json_lua_decode_msg(lua_State *L)
{
    const bp_batch_t *b = (const bp_batch_t *)lua_touserdata(L, 1);
    lua_Integer i = lua_tointeger(L, 2);
    if (!b || i < 0 || i >= b->n)
        return 0;
    const bp_msg_t *m = &b->msgs[i];
    return bp_json_lua_push(L, m->data, m->len);
}

/* See json_lua.h. */
extern "C" int
bp_json_lua_inexact(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    frame st[BP_JSON_LUA_DEPTH + 2];
    int depth = 0;
    lost_clear();
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            size_t s0 = ++i;
            while (i < n && p[i] != '"')
                i += p[i] == '\\' ? 2 : 1;
            if (i >= n)
                return 0;
            size_t j = i + 1;
            while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\n' || p[j] == '\r'))
                j++;
            if (depth > 0 && st[depth - 1].obj && j < n && p[j] == ':') {
                st[depth - 1].key = p + s0;
                st[depth - 1].klen = i - s0;
            }
        } else if (c == '{' || c == '[') {
            if (depth > BP_JSON_LUA_DEPTH)
                return 0;    /* lua-cjson refuses it anyway */
            st[depth++] = frame{ c == '{', NULL, 0, 0 };
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == ',') {
            if (depth > 0 && !st[depth - 1].obj)
                st[depth - 1].index++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t s0 = i;
            while (i + 1 < n && (p[i + 1] == '-' || p[i + 1] == '+' || p[i + 1] == '.' ||
                                 p[i + 1] == 'e' || p[i + 1] == 'E' ||
                                 (p[i + 1] >= '0' && p[i + 1] <= '9')))
                i++;
            const char *tok = p + s0;
            size_t len = i + 1 - s0;
            const char *what = NULL;
            if (inexact_integer(tok, len))
                what = "integer";
            else if (memchr(tok, '.', len) || memchr(tok, 'e', len) || memchr(tok, 'E', len)) {
                /* as the fast path notes it: the double lua-cjson read, for the row writer */
                double v = 0;
                if (says_more(tok, len, &v) && (!json_number(tok, len) || !note_lost(v, tok, len)))
                    what = "fraction";
            }
            if (what) {
                char path[300];
                path_text(st, depth, path, sizeof(path));
                lua_pushstring(L, path);
                lua_pushlstring(L, tok, len);
                lua_pushstring(L, what);
                return 3;
            }
        }
    }
    return 0;
}

/* See json_lua.h. */
extern "C" int
bp_json_lua_decode(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    return bp_json_lua_push(L, p, n);
}
