-- True outcomes of served requests, one per request_id: the first label stored wins.
-- Joined to predictions and shadow_predictions by request_id in SQL (no Kafka join).
CREATE TABLE feedback (
    request_id  text PRIMARY KEY,
    label       smallint NOT NULL CHECK (label IN (0, 1)),
    observed_at timestamptz NOT NULL,  -- when the outcome was observed (client's time)
    received_at timestamptz NOT NULL DEFAULT now(),  -- when it was stored
    -- No prediction was stored for request_id when the label arrived (feedback may come
    -- first). Cleared by the orphan cleanup if the prediction arrived since; an orphan
    -- older than PHOENIX_FEEDBACK_ORPHAN_TTL_S is deleted.
    orphan      boolean NOT NULL DEFAULT false
);

-- The cleanup's scan: only orphans, oldest first; joined rows leave the index.
CREATE INDEX feedback_orphan_received_at_idx ON feedback (received_at) WHERE orphan;

-- Online evaluations, one row per (model, version, variant) per periodic evaluation.
CREATE TABLE evaluations (
    model          text NOT NULL,
    version        text NOT NULL,
    variant        text NOT NULL,        -- champion | challenger | shadow
    evaluated_at   timestamptz NOT NULL,
    window_rows    integer NOT NULL,     -- the evaluation window: latest labelled rows
    n              integer NOT NULL,     -- labelled rows in the window
    accuracy       double precision,
    log_loss       double precision,
    brier          double precision,
    auc            double precision,     -- NULL with too few labels of either class
    positive_rate  double precision,     -- share of true labels that are 1
    PRIMARY KEY (model, evaluated_at, version, variant)
);
