-- Incidents. Priority is stored for sorting and filtering, recomputed on every write from impact, urgency
-- and escalation; SLA due instants move forward by the time spent pending.
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    number BIGINT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    impact TEXT NOT NULL,
    urgency TEXT NOT NULL,
    priority BIGINT NOT NULL,
    escalated BIGINT NOT NULL,
    major BIGINT NOT NULL,
    state TEXT NOT NULL,
    process_name TEXT NOT NULL,
    process_version BIGINT NOT NULL,
    assignee_id TEXT REFERENCES users(id),
    reported_by TEXT NOT NULL,
    dedup_key TEXT,
    report_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_reported_at BIGINT NOT NULL,
    responded_at BIGINT,
    resolved_at BIGINT,
    paused_since BIGINT,
    paused_ms BIGINT NOT NULL,
    response_due_at BIGINT NOT NULL,
    resolution_due_at BIGINT NOT NULL,
    response_breached BIGINT NOT NULL,
    resolution_breached BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX incidents_state ON incidents(state);
CREATE INDEX incidents_dedup ON incidents(dedup_key);
CREATE INDEX incidents_sla ON incidents(resolved_at, paused_since);

-- The CIs an incident affects. No reference to cis: an incident's history outlives a deleted CI.
CREATE TABLE incident_cis (
    incident_id TEXT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    ci_id TEXT NOT NULL,
    PRIMARY KEY (incident_id, ci_id)
);
CREATE INDEX incident_cis_ci ON incident_cis(ci_id);
