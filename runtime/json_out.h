/* json_out.h - writing JSON text into a bp_buf: quoted strings with full escaping. */
#ifndef BP_JSON_OUT_H
#define BP_JSON_OUT_H

#include "buf.h"

int bp_json_string(bp_buf_t *b, const char *s, size_t len) BP_WUR;
int bp_json_string_cut(bp_buf_t *b, const char *s, size_t len, size_t max_out) BP_WUR;
int bp_json_text_utf8(bp_buf_t *b, const char *s, size_t len) BP_WUR;
int bp_json_string_or_null(bp_buf_t *b, const char *s, size_t len) BP_WUR;
size_t bp_utf8_valid_prefix(const char *s, size_t len);
/* Appends the bytes of s with every invalid UTF-8 sequence replaced by U+FFFD, byte for byte as
 * bp_json_text_utf8 replaces them in JSON text (one U+FFFD per byte of an invalid sequence), so a
 * value written raw (a protobuf string) holds what its JSON reads back as. Returns 0, or -1 when
 * the buffer's cap is reached. */
int bp_utf8_fixed(bp_buf_t *b, const char *s, size_t len) BP_WUR;

#endif
