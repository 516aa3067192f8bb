-- Departments: a user group owns business services, and the VMs of those services count against the group's
-- quota (at most so many VMs, vCPUs, MiB of memory, GiB of disk; NULL is no limit), when a change asks for more.
CREATE TABLE service_departments (
    service_id TEXT PRIMARY KEY REFERENCES cis(id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    updated_at BIGINT NOT NULL
);
CREATE INDEX service_departments_group ON service_departments(group_id);
CREATE TABLE department_quotas (
    group_id TEXT PRIMARY KEY REFERENCES user_groups(id) ON DELETE CASCADE,
    max_vms BIGINT,
    max_vcpus BIGINT,
    max_memory_mib BIGINT,
    max_disk_gib BIGINT,
    updated_at BIGINT NOT NULL
);
