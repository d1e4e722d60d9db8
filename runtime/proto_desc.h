/* proto_desc.h - a table's writer schema for the BigQuery Storage Write API: the
 * google.protobuf.DescriptorProto that AppendRowsRequest.proto_rows.writer_schema carries,
 * built from the same bp_schema the row checker holds (the DDL's, then the live table's). */
#ifndef BP_PROTO_DESC_H
#define BP_PROTO_DESC_H

#include <stddef.h>

#include "buf.h"
#include "schema.h"

/* The root message's name in the descriptor (its nested RECORD types are "row_<n>[_<n>...]"). */
#define BP_PROTO_ROOT_NAME "row"

/* Appends the DescriptorProto of schema s to out (its serialized bytes, for
 * ProtoSchema.proto_descriptor). The mapping is Google's (the Node client's
 * adapt.convertStorageSchemaToProto2Descriptor, proto2): field numbers 1..N in each RECORD's
 * column order; BOOL bool, INT64 int64, FLOAT64 double, TIMESTAMP int64 (microseconds since the
 * epoch), DATE int32 (days since 1970-01-01), BYTES bytes, STRING / GEOGRAPHY / NUMERIC /
 * BIGNUMERIC / DATETIME / TIME / JSON string, RECORD a message of its own (every one nested in the
 * root, as the service wants a self-contained descriptor); NULLABLE optional, REQUIRED required,
 * REPEATED repeated (packed for numbers and bools). A column whose name is not a proto identifier
 * gets a placeholder field name and the column_name option (extension 454943157), as Google's Go
 * client does. Returns 0, or -1 with the reason in why for a column type the Storage Write API
 * cannot take from bepipe-lua (RANGE, INTERVAL) or when out passes its maximum (out as it was).
 * Start and reload only (it allocates a tree per call). */
int bp_proto_descriptor(const struct bp_schema *s, bp_buf_t *out, char *why, size_t whylen) BP_WUR;

/* The proto field type (google.protobuf.FieldDescriptorProto.Type) a column of this schema field
 * is written as, or 0 for a type the writer cannot take. */
int bp_proto_field_type(const struct bp_schema_field *f);

/* Whether name[0..n) is a proto identifier ([A-Za-z_][A-Za-z0-9_]*), usable as a field name. */
int bp_proto_ident_ok(const char *name, size_t n);

#endif
