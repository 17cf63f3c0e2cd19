-- Every served prediction, one row per request_id (the idempotency key of the pipeline).
-- Times are timestamptz; the sink converts the pipeline's epoch seconds.
CREATE TABLE predictions (
    request_id    text PRIMARY KEY,
    entity_id     text,
    model         text,
    version       text,
    variant       text,              -- champion | challenger
    score         double precision,
    label         integer,
    features      jsonb,             -- the feature vector used: name -> value
    defaults_used text[],            -- names of features that fell back to their default
    degraded      boolean,           -- served with defaults because Redis was unreachable
    source        text,              -- kafka | http
    received_at   timestamptz,
    predicted_at  timestamptz,
    latency_ms    double precision,
    written_at    timestamptz NOT NULL DEFAULT now()
);

-- Per-model time ranges: retraining windows, dashboards, joins with feedback by time.
CREATE INDEX predictions_model_predicted_at_idx ON predictions (model, predicted_at);
-- Per-version comparisons (champion vs challenger metrics, canary evidence).
CREATE INDEX predictions_model_version_predicted_at_idx
    ON predictions (model, version, predicted_at);
-- Time-only scans and retention deletes. BRIN: rows arrive roughly in predicted_at order,
-- so a tiny block-range index serves these scans and costs next to nothing on insert.
CREATE INDEX predictions_predicted_at_brin ON predictions USING brin (predicted_at);
