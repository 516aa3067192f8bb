-- The CIs of the changes whose windows are booked (states submitted to verifying), with each change's window
-- and number, written with the change's state and edits: conflict checks read only these, however long a CI's
-- history of changes.
CREATE TABLE live_change_cis (
    ci_id TEXT NOT NULL,
    change_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    PRIMARY KEY (ci_id, change_id)
);
CREATE INDEX live_change_cis_change ON live_change_cis(change_id);
INSERT INTO live_change_cis (ci_id, change_id, number, window_start, window_end)
SELECT cc.ci_id, cc.change_id, c.number, c.window_start, c.window_end
FROM change_cis cc JOIN changes c ON c.id = cc.change_id
WHERE c.state IN ('submitted', 'assessed', 'awaiting_approval', 'approved', 'scheduled', 'implementing', 'verifying');
