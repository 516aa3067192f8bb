-- Rollups: per series, per minute and per hour, the minimum, maximum, sum and count of its points, merged
-- as segments are rolled up (late points merge into their bucket). Raw segments go once rolled up and older
-- than the raw retention; each resolution's buckets have their own retention.
ALTER TABLE metric_segments ADD COLUMN rolled_up BIGINT NOT NULL DEFAULT 0;
CREATE INDEX metric_segments_pending ON metric_segments(id) WHERE rolled_up = 0;
CREATE TABLE metric_rollups (
    series_id BIGINT NOT NULL,
    -- Seconds: 60 or 3600.
    resolution BIGINT NOT NULL,
    -- The bucket's start, nanoseconds since the epoch.
    bucket BIGINT NOT NULL,
    min_value DOUBLE PRECISION NOT NULL,
    max_value DOUBLE PRECISION NOT NULL,
    sum_value DOUBLE PRECISION NOT NULL,
    count_value BIGINT NOT NULL,
    PRIMARY KEY (series_id, resolution, bucket)
);
CREATE INDEX metric_rollups_age ON metric_rollups(resolution, bucket);
