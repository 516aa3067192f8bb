-- The web dashboard and email. A secret the server signs with (forms' CSRF tokens, approval links in emails),
-- kept in the database so that links already sent still work after a restart; and the approval links that
-- were used, so each works once.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE email_links_used (
    signature TEXT PRIMARY KEY,
    change_id TEXT NOT NULL,
    used_at BIGINT NOT NULL
);
-- Delivery attempts of a notification by email, so one the mail server keeps refusing is given up on.
ALTER TABLE notifications ADD COLUMN delivery_attempts BIGINT NOT NULL DEFAULT 0;
