-- Every write to a change moves its version, so that a writer that decided on what it read writes only if
-- nothing moved since (times alone cannot tell two writes within one millisecond apart).
ALTER TABLE changes ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
