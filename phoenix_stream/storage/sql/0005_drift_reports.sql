-- One drift report per (model, version, window): the KS statistics of each feature (and of
-- the score, feature "__score__") in a closed window against the version's reference.
-- Written once whatever the number of workers or redeliveries (ON CONFLICT DO NOTHING).
CREATE TABLE drift_reports (
    model        text NOT NULL,
    version      text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    n            bigint NOT NULL CHECK (n >= 0),  -- rows (predictions) in the window
    verdict      text NOT NULL CHECK (verdict IN ('drift', 'no_drift', 'insufficient')),
    alarm        boolean NOT NULL,  -- the verdict persisted long enough to trigger
    consecutive  integer NOT NULL CHECK (consecutive >= 0),  -- drift windows in a row
    trigger_id   text,  -- the retrain trigger this alarm raised, if any
    -- name -> {"statistic", "p_value", "effect", "drifted"}
    features     jsonb NOT NULL,
    rule         jsonb NOT NULL,  -- the decision rule's parameters (alpha, floor, ...)
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, version, window_start)
);

-- GET /v1/drift/{model}: the newest windows of a model, across its versions.
CREATE INDEX drift_reports_model_window_idx ON drift_reports (model, window_start DESC);
