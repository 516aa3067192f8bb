-- Control-plane jobs: one per change revision being carried out. Whichever server holds a job's lease
-- advances it one step at a time; `memo` keeps what the steps learned (placements, sizes before, the
-- inverse steps to run on failure), so a server that takes over after a crash resumes where it stopped.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    change_id TEXT NOT NULL REFERENCES changes(id),
    revision BIGINT NOT NULL,
    state TEXT NOT NULL,
    step BIGINT NOT NULL,
    steps BIGINT NOT NULL,
    current TEXT NOT NULL,
    plan TEXT NOT NULL,
    memo TEXT NOT NULL,
    error TEXT,
    claimed_by TEXT,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (change_id, revision)
);
CREATE INDEX jobs_state ON jobs(state);

-- Work for one host's agent. Ids are made from the job, step and position, so a step run again after a
-- crash finds the tasks it already created (and their outcomes) instead of repeating them.
CREATE TABLE host_tasks (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    agent_id TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX host_tasks_agent ON host_tasks(agent_id, state);

-- What each agent said of itself when it last started pulling tasks.
CREATE TABLE agent_hosts (
    agent_id TEXT PRIMARY KEY,
    hypervisor TEXT NOT NULL,
    peer_uri TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);
