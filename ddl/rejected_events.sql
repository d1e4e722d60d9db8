-- Dead letters: every event that could not be stored, with the stage that refused it and why.
-- Nothing is dropped silently: parse, route, validate and map failures, and rows BigQuery rejected
-- (stage `insert`), land here. The raw line is also archived in GCS under errors/.
CREATE TABLE IF NOT EXISTS `backend_events_data.rejected_events` (
  message_id STRING OPTIONS(description="Pub/Sub messageId, or source:line for file input"),
  event_type STRING OPTIONS(description="event_type of the event when it could be read, else NULL"),
  error_stage STRING OPTIONS(description="Stage that rejected the event: parse, route, validate, map or insert"),
  reason STRING OPTIONS(description="Human-readable reason for the rejection"),
  raw_payload STRING OPTIONS(description="The raw event as received (invalid UTF-8 replaced by U+FFFD; cut at 1 MiB)"),
  attributes JSON OPTIONS(description="Pub/Sub message attributes as a JSON object"),
  publish_time TIMESTAMP OPTIONS(description="Pub/Sub publish time of the message"),
  ingestion_time TIMESTAMP OPTIONS(description="Timestamp when the event was dead-lettered")
)
PARTITION BY DATE(ingestion_time)
CLUSTER BY error_stage, event_type
OPTIONS(
  description="Events rejected by the pipeline, with the stage and reason"
);
