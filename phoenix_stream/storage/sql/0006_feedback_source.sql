-- Where each label came from: 'http:<principal>' (POST /v1/feedback with a feedback token)
-- or 'kafka' (the feedback topic). Evaluation, promotion and retraining count only the
-- sources they trust. Labels stored before this column existed came through paths that
-- checked no credential: they are marked 'unrecorded' and never count.
ALTER TABLE feedback ADD COLUMN source text NOT NULL DEFAULT 'unrecorded';
ALTER TABLE feedback ALTER COLUMN source DROP DEFAULT;
