-- What the alert evaluator knows of each watched series a rule has found in trouble: pending (in trouble,
-- waiting out the rule's `for`), firing, or resolving (recovered, waiting out its quiet period). A series
-- with no row is fine. A firing alert either has its incident or names what suppressed it: the change
-- implementing on its CI, or the host-down alert of the host it runs on.
CREATE TABLE alert_states (
    rule_id TEXT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    series_id BIGINT NOT NULL,
    state TEXT NOT NULL,
    since BIGINT NOT NULL,
    value DOUBLE PRECISION,
    ci_id TEXT,
    incident_id TEXT,
    suppressed_by_change TEXT,
    suppressed_by_alert TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (rule_id, fingerprint)
);
