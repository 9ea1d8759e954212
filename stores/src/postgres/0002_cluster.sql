-- Migration 2: what the processes of one cluster share beyond the records (the
-- `ClusterState` trait), and the ordering the sequencer of striped accounts relies on.

-- The sequencer numbers queued entries in id order, which must follow the order in which
-- their transactions took their balance rows. With a per-session cache, every connection
-- draws ids from its own block (1-64, 65-128, ...), so a later batch on another connection
-- could get a smaller id than an earlier one and land before it in the ledger (a floored
-- debit before the credit that paid for it). Without a cache, nextval runs while the unit
-- holds its balance row locks: a unit that waited for another's row gets a larger id.
-- A connection opened before this migration uses up its cached block first; no release
-- before this one striped an account, so such a connection queues entries only if a
-- process of the previous release still runs once this one has registered its striped
-- accounts (stop those first).
ALTER TABLE striped_entries ALTER COLUMN id SET CACHE 1;

-- Leases on periodic jobs, on the database's clock: whoever holds an unexpired lease
-- runs the job.
CREATE TABLE job_leases (
  job    text        PRIMARY KEY,
  holder uuid        NOT NULL,
  until  timestamptz NOT NULL
);

-- Every keyring ever published, newest (highest epoch) current. Append-only: an operator
-- reads the rotation history here.
CREATE TABLE keyring_epochs (
  epoch        bigint      PRIMARY KEY CHECK (epoch >= 1),
  fingerprint  bytea       NOT NULL CHECK (octet_length(fingerprint) = 32),
  published_at timestamptz NOT NULL DEFAULT now()
);

-- Compare-and-set publication. `published`: true when the answer is the current epoch
-- (just published, or `p_fingerprint` already was current); false when the current epoch
-- is not `p_expected` (NULL: none yet), with the current epoch (NULLs if none).
CREATE FUNCTION scrip_publish_keyring(p_fingerprint bytea, p_expected bigint,
  OUT published boolean, OUT current_epoch bigint, OUT current_fingerprint bytea)
LANGUAGE plpgsql AS $$
BEGIN
  -- Self-conflicting, so two publishers run one after the other; readers never wait.
  LOCK TABLE keyring_epochs IN SHARE ROW EXCLUSIVE MODE;
  SELECT k.epoch, k.fingerprint INTO current_epoch, current_fingerprint
    FROM keyring_epochs k ORDER BY k.epoch DESC LIMIT 1;
  IF current_fingerprint = p_fingerprint THEN
    published := true;
    RETURN;
  END IF;
  IF current_epoch IS DISTINCT FROM p_expected THEN
    published := false;
    RETURN;
  END IF;
  current_epoch := coalesce(current_epoch, 0) + 1;
  current_fingerprint := p_fingerprint;
  INSERT INTO keyring_epochs (epoch, fingerprint) VALUES (current_epoch, current_fingerprint);
  published := true;
END $$;

-- The statements of scrip_apply_unit take their arrays as parameters, so PostgreSQL's
-- custom plans are no better than the generic one, yet the plan cache kept choosing them:
-- its two largest statements were planned again on every call (about 250 us of the
-- 525 us a unit cost, measured with pg_stat_statements). Generic plans: about 140 us.
ALTER FUNCTION scrip_apply_unit SET plan_cache_mode = force_generic_plan;
