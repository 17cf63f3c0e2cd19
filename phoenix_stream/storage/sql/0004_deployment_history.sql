-- The audit trail of deployment decisions: who, when, why, with what evidence.
-- One row per (model, generation); the deployments agent writes each record once.
CREATE TABLE deployment_history (
    model text NOT NULL,
    generation bigint NOT NULL,
    champion text NOT NULL,
    challenger text,
    strategy text NOT NULL,
    share double precision NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL,
    evidence jsonb NOT NULL,
    steps double precision[] NOT NULL,
    step integer NOT NULL,
    challenger_since timestamptz,
    decided_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, generation)
);
