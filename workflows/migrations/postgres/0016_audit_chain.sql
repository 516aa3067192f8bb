-- A record's place in the chain (position, link, hash) moves to a narrow table of its own, so that sealing
-- writes a small row per record instead of rewriting the record with its snapshots: audit_log is written
-- once and never updated. Every record written gets its row here, unsealed, from the trigger below.
CREATE TABLE audit_chain (
    seq BIGINT PRIMARY KEY,
    chain_pos BIGINT UNIQUE,
    prev_hash TEXT,
    hash TEXT
);
INSERT INTO audit_chain (seq, chain_pos, prev_hash, hash) SELECT seq, chain_pos, prev_hash, hash FROM audit_log;
CREATE INDEX audit_chain_unsealed ON audit_chain(seq) WHERE chain_pos IS NULL;
ALTER TABLE audit_log DROP COLUMN chain_pos, DROP COLUMN prev_hash, DROP COLUMN hash;

CREATE FUNCTION audit_log_to_seal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_chain (seq) SELECT seq FROM written;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_log_to_seal AFTER INSERT ON audit_log REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_to_seal();

-- Records as readers see them: content and place in the chain.
CREATE VIEW audit_records AS
SELECT a.seq, c.chain_pos, a.at, a.actor, a.actor_id, a.on_behalf_of, a.request_id, a.action, a.entity_type,
       a.entity_id, a.before_json, a.after_json, c.prev_hash, c.hash
FROM audit_log a LEFT JOIN audit_chain c ON c.seq = a.seq;
