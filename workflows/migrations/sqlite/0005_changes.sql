-- Changes. Operations, rollback plan and risk are JSON documents the domain types read and write; the
-- columns the store filters and sorts on stand beside them.
CREATE TABLE changes (
    id TEXT PRIMARY KEY,
    number BIGINT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    process_name TEXT NOT NULL,
    process_version BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    requester_id TEXT NOT NULL REFERENCES users(id),
    requester TEXT NOT NULL,
    operations TEXT NOT NULL,
    -- The operations' kinds, sorted: changes with the same signature share a failure history.
    signature TEXT NOT NULL,
    rollback TEXT NOT NULL,
    risk TEXT NOT NULL,
    risk_score BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    conflict_override TEXT,
    review TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX changes_state ON changes(state);
CREATE INDEX changes_window ON changes(window_start, window_end);
CREATE INDEX changes_signature ON changes(kind, signature, number);

-- The CIs a change touches: those it names and those its operations act on. No reference to cis: a
-- change's history outlives a deleted CI.
CREATE TABLE change_cis (
    change_id TEXT NOT NULL REFERENCES changes(id) ON DELETE CASCADE,
    ci_id TEXT NOT NULL,
    PRIMARY KEY (change_id, ci_id)
);
CREATE INDEX change_cis_ci ON change_cis(ci_id);
