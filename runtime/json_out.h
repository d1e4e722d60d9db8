/* json_out.h - writing JSON text into a bp_buf: quoted strings with full escaping. */
#ifndef BP_JSON_OUT_H
#define BP_JSON_OUT_H

#include "buf.h"

int bp_json_string(bp_buf_t *b, const char *s, size_t len) BP_WUR;
int bp_json_string_cut(bp_buf_t *b, const char *s, size_t len, size_t max_out) BP_WUR;
int bp_json_text_utf8(bp_buf_t *b, const char *s, size_t len) BP_WUR;
int bp_json_string_or_null(bp_buf_t *b, const char *s, size_t len) BP_WUR;
size_t bp_utf8_valid_prefix(const char *s, size_t len);

#endif
