-- Approval policies (data), the round of approval a change revision goes through, votes, and delegation.
CREATE TABLE approval_policies (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- One round per change revision: the policy it runs (a snapshot) and the stage it has reached.
CREATE TABLE approval_rounds (
    change_id TEXT NOT NULL REFERENCES changes(id) ON DELETE CASCADE,
    revision BIGINT NOT NULL,
    policy TEXT NOT NULL,
    stage BIGINT NOT NULL,
    stage_opened_at BIGINT NOT NULL,
    -- Groups added to the current stage by a timeout's escalation, comma-separated.
    escalated_groups TEXT NOT NULL,
    timed_out BIGINT NOT NULL,
    PRIMARY KEY (change_id, revision)
);

-- A person counts once per stage: `counted_as_id` is the voter, or the member a delegate voted for.
CREATE TABLE approval_votes (
    id TEXT PRIMARY KEY,
    change_id TEXT NOT NULL REFERENCES changes(id) ON DELETE CASCADE,
    revision BIGINT NOT NULL,
    stage BIGINT NOT NULL,
    voter_id TEXT NOT NULL,
    voter TEXT NOT NULL,
    counted_as_id TEXT NOT NULL,
    counted_as TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT NOT NULL,
    at BIGINT NOT NULL,
    UNIQUE (change_id, revision, stage, counted_as_id)
);

CREATE TABLE delegations (
    id TEXT PRIMARY KEY,
    from_user_id TEXT NOT NULL REFERENCES users(id),
    to_user_id TEXT NOT NULL REFERENCES users(id),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX delegations_to ON delegations(to_user_id, starts_at);
