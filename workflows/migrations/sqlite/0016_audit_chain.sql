-- A record's place in the chain (position, link, hash) moves to a narrow table of its own, so that sealing
-- writes a small row per record instead of rewriting the record with its snapshots: audit_log is written
-- once and never updated. Every record written gets its row here, unsealed, from the trigger below.
CREATE TABLE audit_chain (
    seq INTEGER PRIMARY KEY,
    chain_pos BIGINT UNIQUE,
    prev_hash TEXT,
    hash TEXT
);
INSERT INTO audit_chain (seq, chain_pos, prev_hash, hash) SELECT seq, chain_pos, prev_hash, hash FROM audit_log;
CREATE INDEX audit_chain_unsealed ON audit_chain(seq) WHERE chain_pos IS NULL;

-- SQLite cannot drop a UNIQUE column: the log is rebuilt without the chain's columns.
CREATE TABLE audit_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_id TEXT,
    on_behalf_of TEXT,
    request_id TEXT,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
INSERT INTO audit_entries (seq, at, actor, actor_id, on_behalf_of, request_id, action, entity_type, entity_id,
                           before_json, after_json)
SELECT seq, at, actor, actor_id, on_behalf_of, request_id, action, entity_type, entity_id, before_json, after_json
FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_entries RENAME TO audit_log;
CREATE INDEX audit_log_entity ON audit_log(entity_type, entity_id);

CREATE TRIGGER audit_log_to_seal AFTER INSERT ON audit_log
BEGIN
    INSERT INTO audit_chain (seq) VALUES (NEW.seq);
END;

-- Records as readers see them: content and place in the chain.
CREATE VIEW audit_records AS
SELECT a.seq, c.chain_pos, a.at, a.actor, a.actor_id, a.on_behalf_of, a.request_id, a.action, a.entity_type,
       a.entity_id, a.before_json, a.after_json, c.prev_hash, c.hash
FROM audit_log a LEFT JOIN audit_chain c ON c.seq = a.seq;
