-- SCIM resources of each directory. The body is the resource's JSON without `meta`,
-- `members` and `groups`: memberships live in scim_members, so a user's `groups` and a
-- group's `members` are always consistent.
CREATE TABLE scim_resources (
    directory_id  TEXT NOT NULL REFERENCES directories(id),
    id            TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    -- lower(userName) for users, lower(displayName) for groups: uniqueness and eq lookups
    name_key      TEXT NOT NULL,
    external_id   TEXT,
    body          TEXT NOT NULL,
    -- The query document filters and sortBy read: the body normalised, case-insensitive
    -- strings lower-cased in Rust, presence flags and sort keys (see scim_sql.rs).
    body_ci       TEXT NOT NULL,
    PRIMARY KEY (directory_id, id),
    UNIQUE (directory_id, resource_type, name_key)
);
CREATE INDEX scim_resources_external_id ON scim_resources (directory_id, resource_type, external_id);

CREATE TABLE scim_members (
    directory_id TEXT NOT NULL,
    group_id     TEXT NOT NULL,
    member_id    TEXT NOT NULL,
    member_type  TEXT NOT NULL,
    PRIMARY KEY (directory_id, group_id, member_id)
);
CREATE INDEX scim_members_member ON scim_members (directory_id, member_id);

-- Searchable values of multi-valued attributes (lower-cased), e.g. emails.value.
CREATE TABLE scim_values (
    directory_id TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    attr         TEXT NOT NULL,
    value_key    TEXT NOT NULL,
    PRIMARY KEY (directory_id, attr, value_key, resource_id)
);
CREATE INDEX scim_values_resource ON scim_values (directory_id, resource_id);
-- Filters start from here (an emails value names few resources in any directory).
CREATE INDEX scim_values_key ON scim_values (attr, value_key);
