-- Notifications: what Tollgate has to tell a person (approval requested, a change's decision or outcome,
-- an incident assigned or breached). People read them in the API; the mailer delivers them.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT,
    delivered_at BIGINT
);
CREATE INDEX notifications_recipient ON notifications(recipient_id, created_at);
CREATE INDEX notifications_undelivered ON notifications(delivered_at);
