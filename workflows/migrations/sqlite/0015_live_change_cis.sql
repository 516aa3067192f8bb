-- The CIs of the changes whose windows are booked (states submitted to verifying), kept beside change_cis and
-- moved with each change's state: conflict checks read only these, however long a CI's history of changes.
CREATE TABLE live_change_cis (
    ci_id TEXT NOT NULL,
    change_id TEXT NOT NULL,
    PRIMARY KEY (ci_id, change_id)
);
CREATE INDEX live_change_cis_change ON live_change_cis(change_id);
INSERT INTO live_change_cis (ci_id, change_id)
SELECT cc.ci_id, cc.change_id FROM change_cis cc JOIN changes c ON c.id = cc.change_id
WHERE c.state IN ('submitted', 'assessed', 'awaiting_approval', 'approved', 'scheduled', 'implementing', 'verifying');
