-- Challenger answers served in shadow: scored for comparison, never returned to the
-- caller. One per request (the primary key, copied from predictions, is request_id), so
-- champion and challenger join on request_id; variant says 'challenger'. Same columns,
-- defaults and indexes as predictions, taken from its definition at this version.
CREATE TABLE shadow_predictions (LIKE predictions INCLUDING ALL);
