-- Metric points agents write. A series (measurement, field, tags) is numbered once; each committed batch of
-- writes is one segment holding every series' points of the batch, packed (see metrics::block).
CREATE TABLE metric_series (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    measurement TEXT NOT NULL,
    field TEXT NOT NULL,
    -- Sorted by key, key=value joined by commas, escaped as in line protocol.
    tags TEXT NOT NULL,
    UNIQUE (measurement, field, tags)
);
CREATE TABLE metric_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    min_ts BIGINT NOT NULL,
    max_ts BIGINT NOT NULL,
    points BIGINT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX metric_segments_time ON metric_segments(max_ts, min_ts);
