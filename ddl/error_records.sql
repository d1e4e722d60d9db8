-- Dead letters in the format of Google's Pub/Sub-to-BigQuery Dataflow template (its
-- `<table>_error_records` table), for `dead_letter.format = "dataflow"` with
-- `dead_letter.table = "events_error_records"` (or the name of the template's table you keep): a
-- pipeline moved from the template keeps its error tables, queries and dashboards. The columns
-- and modes are the template's; the default format stays rejected_events.sql.
CREATE TABLE IF NOT EXISTS `backend_events_data.events_error_records` (
  timestamp TIMESTAMP NOT NULL OPTIONS(description="When the event was dead-lettered"),
  payloadString STRING NOT NULL OPTIONS(description="The raw event as received (invalid UTF-8 replaced by U+FFFD; cut at 1 MiB)"),
  payloadBytes BYTES NOT NULL OPTIONS(description="The raw event's bytes (its first 768 KiB)"),
  attributes ARRAY<STRUCT<key STRING, value STRING>> OPTIONS(description="Pub/Sub message attributes"),
  errorMessage STRING OPTIONS(description="Stage and reason: `validate: quantity_change: ...`"),
  stacktrace STRING OPTIONS(description="Where it failed: stage, event_type, Pub/Sub messageId and publish time")
)
PARTITION BY DATE(timestamp)
OPTIONS(
  description="Events rejected by the pipeline, as the Dataflow template's error records"
);
