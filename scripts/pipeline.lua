-- pipeline.lua: the seed's pipeline (Pub/Sub -> validate and route -> BigQuery + GCS archive).
--
-- Run it:   bepipe-lua scripts/pipeline.lua                       (Pub/Sub -> BigQuery, GCS)
--           bepipe-lua scripts/pipeline.lua --input events.ndjson --local-out out/   (offline)
-- The seed's flags (--input_subscription, --bq_project, --bq_dataset, --gcs_output_path,
-- --project) override the values below; `bepipe-lua --help` lists every option.
-- Edit this file or a script under events/ and send SIGHUP to apply it without a restart.
return {
    project = "re-case",

    source = {
        subscription = "projects/re-case/subscriptions/backend-events-topic-sub",
        -- flow control: pulling pauses while this much is unacknowledged. Messages are acked
        -- once their archive object is stored, so this also sets the top rate of one process
        -- (about 13k events/s at 10,000 and 30k/s at 30,000 through the local emulator)
        max_outstanding_messages = 30000,
        max_outstanding_bytes = 50 * 1024 * 1024,
    },

    bigquery = {
        project = "re-case",
        dataset = "backend_events_data",
        -- one insertAll request per table flushes at whichever comes first
        batch_rows = 500,
        batch_bytes = 5 * 1024 * 1024,
        batch_ms = 1000,
    },

    -- raw events as NDJSON: <path>/<type>/YYYY/MM/DD/HH/<type>_YYYYMMDDHHMMSS.json
    archive = {
        path = "gs://backend_events_data/output",
        roll_bytes = 64 * 1024 * 1024,
        roll_seconds = 60,
    },

    -- events that fail parse, route, validate, map or insert: a row in this table with the
    -- stage and reason, and the raw line under <archive path>/errors/. The table defaults to
    -- the format's: rejected_events, or events_error_records with format = "dataflow"
    dead_letter = {
        -- table = "rejected_events",
        archive_prefix = "errors",
    },

    -- the value of this field picks the route; each route's script names its table
    route_field = "event_type",
    routes = {
        order = "events.order",
        inventory = "events.inventory",
        user_activity = "events.user_activity",
    },
}
