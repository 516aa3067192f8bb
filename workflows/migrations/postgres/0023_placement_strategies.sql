-- How each business service wants its VMs placed: spread (apart, for availability), pack (onto the fullest
-- hosts that fit) or least_utilised (onto the hosts whose CPU was least busy). A service without a row spreads.
CREATE TABLE placement_strategies (
    service_id TEXT PRIMARY KEY REFERENCES cis(id) ON DELETE CASCADE,
    strategy TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
