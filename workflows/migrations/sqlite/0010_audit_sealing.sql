-- Audit records are numbered as they are written and chained moments later by the sealer, so writers
-- no longer queue on the chain's head. `chain_pos`, `prev_hash` and `hash` stay empty until sealed.
CREATE TABLE audit_records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_pos BIGINT UNIQUE,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_id TEXT,
    on_behalf_of TEXT,
    request_id TEXT,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT,
    prev_hash TEXT,
    hash TEXT
);
INSERT INTO audit_records (seq, chain_pos, at, actor, actor_id, on_behalf_of, request_id, action, entity_type,
                           entity_id, before_json, after_json, prev_hash, hash)
SELECT seq, seq, at, actor, actor_id, on_behalf_of, request_id, action, entity_type,
       entity_id, before_json, after_json, prev_hash, hash
FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_records RENAME TO audit_log;
CREATE INDEX audit_log_entity ON audit_log(entity_type, entity_id);
CREATE INDEX audit_log_unsealed ON audit_log(seq) WHERE chain_pos IS NULL;
