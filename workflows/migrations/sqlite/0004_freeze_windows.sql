-- Freeze (blackout) windows, each scoped to one CI (a region, data centre, cluster or service) and
-- everything within or belonging to it.
CREATE TABLE freeze_windows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    scope_ci_id TEXT NOT NULL REFERENCES cis(id),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX freeze_windows_scope ON freeze_windows(scope_ci_id, starts_at);
