-- Rollups packed: a row holds one series' buckets at one resolution over one period (minute buckets: an hour;
-- hour buckets: a day), as one fold pass (numbered by the first segment it folded) found them. A period may
-- have rows from several passes; readers merge them. Rows are only ever inserted and deleted, never updated.
-- The rollups so far are folded again from the points still kept (rolled_up back to 0).
DROP TABLE metric_rollups;
CREATE TABLE metric_rollups (
    series_id BIGINT NOT NULL,
    resolution BIGINT NOT NULL,
    period BIGINT NOT NULL,
    pass BIGINT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (series_id, resolution, period, pass)
) WITHOUT ROWID;
CREATE INDEX metric_rollups_age ON metric_rollups(resolution, period);
UPDATE metric_segments SET rolled_up = 0 WHERE rolled_up = 1;
