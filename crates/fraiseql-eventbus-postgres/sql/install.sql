-- FraiseQL PostgreSQL event bus: events table, publish functions, change triggers, pruning.
--
-- A template: `fraiseql_eventbus_postgres::install_sql(&config)` (or `install(&client, &config)`)
-- replaces the placeholders below with the configured schema, table, channel prefix and NOTIFY
-- payload threshold. Every statement is idempotent (IF NOT EXISTS / OR REPLACE), so applying it
-- again is how it is upgraded. One channel prefix per events table.
--
--   @SCHEMA@     quoted schema name              (default "public")
--   @TABLE@      quoted events table name        (default "fraiseql_events")
--   @META@       quoted bookkeeping table name   (events table name + "_meta")
--   @INDEX@      quoted (channel, seq) index name
--   @AGE_INDEX@  quoted created_at index name
--   @PREFIX@     NOTIFY channel prefix, [A-Za-z0-9_] only (default fraiseql_)
--   @THRESHOLD@  largest event, in bytes, sent inside the notification (default 7900)

CREATE SCHEMA IF NOT EXISTS @SCHEMA@;

-- Every event, in publish (commit) order by `seq`. `event` is the wire JSON the Rust side
-- reads (`Event::from_wire_json`): id, channel, type, data, tenant_id, audience, ts.
CREATE TABLE IF NOT EXISTS @SCHEMA@.@TABLE@ (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel    text        NOT NULL,
    event      json        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS @INDEX@ ON @SCHEMA@.@TABLE@ (channel, seq);
CREATE INDEX IF NOT EXISTS @AGE_INDEX@ ON @SCHEMA@.@TABLE@ (created_at);

-- One row: the highest sequence ever pruned, so a node catching up knows when rows it
-- needed are gone (and reports a gap instead of silently skipping them).
CREATE TABLE IF NOT EXISTS @SCHEMA@.@META@ (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO @SCHEMA@.@META@ DEFAULT VALUES ON CONFLICT DO NOTHING;

-- The NOTIFY channel of a FraiseQL channel: prefix || channel, or prefix || md5(channel)
-- when that would pass PostgreSQL's 63-byte identifier limit. Same rule as the Rust side.
CREATE OR REPLACE FUNCTION @SCHEMA@.fraiseql_notify_channel(channel text)
RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT CASE
        WHEN octet_length('@PREFIX@' || channel) <= 63 THEN '@PREFIX@' || channel
        ELSE '@PREFIX@' || md5(channel)
    END
$fn$;

-- Records a wire event and notifies its channel: `seq event` when the whole notification fits
-- under `threshold` bytes, else `seq` alone (listeners then read the row). Returns `seq`.
CREATE OR REPLACE FUNCTION @SCHEMA@.fraiseql_publish_wire(
    channel text, wire text, threshold integer DEFAULT @THRESHOLD@)
RETURNS bigint LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
    s bigint;
BEGIN
    INSERT INTO @SCHEMA@.@TABLE@ (channel, event) VALUES (channel, wire::json) RETURNING seq INTO s;
    IF octet_length(wire) + 21 <= threshold THEN
        PERFORM pg_notify(@SCHEMA@.fraiseql_notify_channel(channel), s::text || ' ' || wire);
    ELSE
        PERFORM pg_notify(@SCHEMA@.fraiseql_notify_channel(channel), s::text);
    END IF;
    RETURN s;
END
$fn$;

-- Publishes an event from SQL, in the caller's transaction (delivered on commit, never on
-- rollback). `payload` becomes the event data; an audience restricts who sees it (an empty
-- array means nobody: fail closed). Returns the event's sequence number.
CREATE OR REPLACE FUNCTION @SCHEMA@.fraiseql_publish(
    channel text,
    payload jsonb,
    event_type text DEFAULT 'message',
    tenant_id text DEFAULT NULL,
    audience_users text[] DEFAULT NULL,
    audience_roles text[] DEFAULT NULL,
    event_id text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
    wire jsonb;
BEGIN
    IF channel IS NULL OR channel = '' OR octet_length(channel) > 256 THEN
        RAISE EXCEPTION 'fraiseql_publish: channel must be 1 to 256 bytes, got %', quote_nullable(channel);
    END IF;
    wire := jsonb_build_object(
        'id', coalesce(event_id, gen_random_uuid()::text),
        'channel', channel,
        'type', coalesce(event_type, 'message'),
        'data', coalesce(payload, 'null'::jsonb),
        'ts', floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
    IF tenant_id IS NOT NULL THEN
        wire := wire || jsonb_build_object('tenant_id', tenant_id);
    END IF;
    IF audience_users IS NOT NULL OR audience_roles IS NOT NULL THEN
        wire := wire || jsonb_build_object('audience', jsonb_strip_nulls(jsonb_build_object(
            'users', to_jsonb(audience_users), 'roles', to_jsonb(audience_roles))));
    END IF;
    RETURN @SCHEMA@.fraiseql_publish_wire(channel, wire::text);
END
$fn$;

-- Row trigger behind fraiseql_watch_table. Arguments: channel template, tenant column,
-- owner column ('' = none). `{column}` in the template is replaced by the row's value.
-- Event type: INSERT, UPDATE or DELETE; data: {operation, schema, table, new, old}.
CREATE OR REPLACE FUNCTION @SCHEMA@.fraiseql_row_change()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    channel_template text := TG_ARGV[0];
    tenant_column text := nullif(TG_ARGV[1], '');
    owner_column text := nullif(TG_ARGV[2], '');
    new_row jsonb;
    old_row jsonb;
    source jsonb;
    target text;
    placeholder text[];
    tenant text;
    owner text;
    users text[];
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN new_row := to_jsonb(NEW); END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN old_row := to_jsonb(OLD); END IF;
    source := coalesce(new_row, old_row);
    target := channel_template;
    FOR placeholder IN SELECT regexp_matches(channel_template, '\{([A-Za-z0-9_]+)\}', 'g') LOOP
        target := replace(target, '{' || placeholder[1] || '}', coalesce(source ->> placeholder[1], ''));
    END LOOP;
    IF tenant_column IS NOT NULL THEN
        tenant := source ->> tenant_column;
    END IF;
    IF owner_column IS NOT NULL THEN
        owner := source ->> owner_column;
        -- A row without an owner is seen by nobody rather than by everybody.
        users := CASE WHEN owner IS NULL THEN ARRAY[]::text[] ELSE ARRAY[owner] END;
    END IF;
    PERFORM @SCHEMA@.fraiseql_publish(
        target,
        jsonb_build_object('operation', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                           'new', new_row, 'old', old_row),
        TG_OP, tenant, users);
    RETURN NULL;
END
$fn$;

-- Streams a table's INSERT/UPDATE/DELETE to `channel` (a template: 'orders' or
-- 'orders:{customer_id}'). Calling it again replaces the table's watch.
CREATE OR REPLACE FUNCTION @SCHEMA@.fraiseql_watch_table(
    tbl regclass, channel text, tenant_column text DEFAULT NULL, owner_column text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
    col text;
    placeholder text[];
BEGIN
    IF channel IS NULL OR channel = '' THEN
        RAISE EXCEPTION 'fraiseql_watch_table: channel must not be empty';
    END IF;
    FOR col IN SELECT unnest(ARRAY[tenant_column, owner_column]) LOOP
        IF col IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_attribute
            WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'fraiseql_watch_table: table % has no column %', tbl, quote_ident(col);
        END IF;
    END LOOP;
    FOR placeholder IN SELECT regexp_matches(channel, '\{([A-Za-z0-9_]+)\}', 'g') LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_attribute
            WHERE attrelid = tbl AND attname = placeholder[1] AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'fraiseql_watch_table: channel % names {%}, but table % has no such column',
                quote_literal(channel), placeholder[1], tbl;
        END IF;
    END LOOP;
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', '@PREFIX@watch', tbl);
    EXECUTE format(
        'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW '
        'EXECUTE FUNCTION @SCHEMA@.fraiseql_row_change(%L, %L, %L)',
        '@PREFIX@watch', tbl, channel, coalesce(tenant_column, ''), coalesce(owner_column, ''));
END
$fn$;

-- Stops streaming a table's changes.
CREATE OR REPLACE FUNCTION @SCHEMA@.fraiseql_unwatch_table(tbl regclass)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', '@PREFIX@watch', tbl);
END
$fn$;

-- Deletes events older than `max_age` and beyond the newest `max_count` (NULL = no bound),
-- and remembers the highest sequence deleted. Returns how many rows were deleted.
CREATE OR REPLACE FUNCTION @SCHEMA@.fraiseql_prune(
    max_age interval DEFAULT NULL, max_count bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    cutoff bigint := 0;
    candidate bigint;
    deleted bigint := 0;
BEGIN
    IF max_count IS NOT NULL THEN
        SELECT seq INTO candidate FROM @SCHEMA@.@TABLE@ ORDER BY seq DESC OFFSET max_count LIMIT 1;
        cutoff := greatest(cutoff, coalesce(candidate, 0));
    END IF;
    IF max_age IS NOT NULL THEN
        SELECT max(seq) INTO candidate FROM @SCHEMA@.@TABLE@ WHERE created_at < now() - max_age;
        cutoff := greatest(cutoff, coalesce(candidate, 0));
    END IF;
    IF cutoff > 0 THEN
        DELETE FROM @SCHEMA@.@TABLE@ WHERE seq <= cutoff;
        GET DIAGNOSTICS deleted = ROW_COUNT;
        UPDATE @SCHEMA@.@META@ SET pruned_through = greatest(pruned_through, cutoff);
    END IF;
    RETURN deleted;
END
$fn$;
