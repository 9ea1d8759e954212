CREATE TABLE claims (
  id          bytea  PRIMARY KEY,          -- ClaimId::key_bytes()
  claimant    bytea  NOT NULL,             -- compact Claimant encoding (kind byte || uuid)
  claimed_at  bigint NOT NULL,             -- unit.at, unix ms
  digest      bytea  NOT NULL
);

CREATE TABLE striped_accounts (
  account  bytea    PRIMARY KEY,           -- LedgerAccount::key_bytes()
  stripes  smallint NOT NULL CHECK (stripes BETWEEN 1 AND 1024)
);

CREATE TABLE balances (
  account   bytea         NOT NULL,
  currency  bytea         NOT NULL,        -- Currency::as_bytes(), 3 bytes
  stripe    smallint      NOT NULL DEFAULT 0,
  balance   numeric(39,0) NOT NULL DEFAULT 0
            CHECK (balance BETWEEN -170141183460469231731687303715884105728
                               AND  170141183460469231731687303715884105727),
  postings  bigint        NOT NULL DEFAULT 0,  -- entries so far (unstriped: last seq)
  PRIMARY KEY (account, currency, stripe)
);

CREATE TABLE ledger_entries (
  account       bytea         NOT NULL,
  currency      bytea         NOT NULL,
  seq           bigint        NOT NULL,      -- per (account, currency), 1, 2, 3 ...
  at            bigint        NOT NULL,
  claimant      bytea         NOT NULL,
  delta         numeric(39,0) NOT NULL,
  balance_after numeric(39,0) NOT NULL,
  memo          text          NOT NULL,
  PRIMARY KEY (account, currency, seq)
);

-- Postings to striped accounts wait here (append-only, no contention) until sequenced.
CREATE TABLE striped_entries (
  id        bigint GENERATED ALWAYS AS IDENTITY (CACHE 64) PRIMARY KEY,
  account   bytea NOT NULL, currency bytea NOT NULL,
  at        bigint NOT NULL, claimant bytea NOT NULL,
  delta     numeric(39,0) NOT NULL, memo text NOT NULL
);
CREATE TABLE striped_heads (              -- written only by the sequencer
  account   bytea NOT NULL, currency bytea NOT NULL,
  next_seq  bigint NOT NULL, balance numeric(39,0) NOT NULL,
  PRIMARY KEY (account, currency)
);

CREATE TABLE documents (
  collection bytea NOT NULL,              -- Collection::name() bytes
  key        bytea NOT NULL,
  value      bytea NOT NULL,
  PRIMARY KEY (collection, key)
);

CREATE TABLE nonces (
  key       bytea  PRIMARY KEY,           -- 16-byte replay identity
  forget_at bigint NOT NULL
);
CREATE INDEX nonces_forget_at ON nonces (forget_at);

-- outcome: 0 committed, 1 repeated, 2 conflict, 3 insufficient funds
CREATE FUNCTION scrip_apply_unit(
  p_claimant bytea, p_at bigint, p_stripe int,
  c_ids bytea[], c_digests bytea[],
  p_accounts bytea[], p_currencies bytea[], p_deltas numeric[], p_memos text[],
  f_accounts bytea[], f_currencies bytea[], f_mins numeric[],
  w_collections bytea[], w_keys bytea[], w_values bytea[],
  OUT outcome smallint, OUT first_claimed_at bigint,
  OUT held_claimants bytea[], OUT held_ats bigint[], OUT held_digests bytea[],
  OUT floor_index int, OUT floor_balance text)
LANGUAGE plpgsql AS $$
DECLARE
  n_claims int := coalesce(cardinality(c_ids), 0);
  new_ids  bytea[];
  repeat   boolean;
  l_acc bytea[]; l_cur bytea[]; l_str smallint[]; l_bal numeric[]; l_cnt bigint[];
BEGIN
  -- 1. Claims: optimistic insert, in key order (no deadlock between two units' claims).
  IF n_claims > 0 THEN
    WITH ins AS (
      INSERT INTO claims (id, claimant, claimed_at, digest)
      SELECT u.id, p_claimant, p_at, u.d FROM unnest(c_ids, c_digests) AS u(id, d) ORDER BY u.id
      ON CONFLICT (id) DO NOTHING
      RETURNING id)
    SELECT array_agg(id) INTO new_ids FROM ins;
    IF coalesce(cardinality(new_ids), 0) < n_claims THEN
      DELETE FROM claims WHERE id = ANY (new_ids);          -- undo our part
      SELECT array_agg(c.claimant ORDER BY u.ord), array_agg(c.claimed_at ORDER BY u.ord),
             array_agg(c.digest ORDER BY u.ord),
             bool_and(c.id IS NOT NULL AND c.claimant = p_claimant AND c.digest = u.d),
             min(c.claimed_at)
        INTO held_claimants, held_ats, held_digests, repeat, first_claimed_at
        FROM unnest(c_ids, c_digests) WITH ORDINALITY AS u(id, d, ord)
        LEFT JOIN claims c ON c.id = u.id;
      outcome := CASE WHEN repeat THEN 1 ELSE 2 END;
      IF NOT repeat THEN first_claimed_at := NULL; END IF;
      RETURN;
    END IF;
  END IF;

  -- 2. Lock (creating if missing) every balance row the unit touches, in key order.
  --    A floor on a striped account locks all its stripes.
  IF coalesce(cardinality(p_accounts), 0) + coalesce(cardinality(f_accounts), 0) > 0 THEN
    WITH need AS (
      SELECT p.account, p.currency,
             CASE WHEN s.stripes IS NULL THEN 0 ELSE p_stripe % s.stripes END::smallint AS stripe
        FROM unnest(p_accounts, p_currencies) AS p(account, currency)
        LEFT JOIN striped_accounts s USING (account)
      UNION
      SELECT f.account, f.currency, g.stripe::smallint
        FROM unnest(f_accounts, f_currencies) AS f(account, currency)
        LEFT JOIN striped_accounts s USING (account)
        CROSS JOIN LATERAL generate_series(0, coalesce(s.stripes, 1) - 1) AS g(stripe)
    ), locked AS (
      INSERT INTO balances AS b (account, currency, stripe)
      SELECT account, currency, stripe FROM need ORDER BY account, currency, stripe
      ON CONFLICT (account, currency, stripe) DO UPDATE SET balance = b.balance
      RETURNING b.account, b.currency, b.stripe, b.balance, b.postings)
    SELECT array_agg(account), array_agg(currency), array_agg(stripe), array_agg(balance), array_agg(postings)
      INTO l_acc, l_cur, l_str, l_bal, l_cnt FROM locked;

    -- 3. Floors, in the unit's order; the first that fails is reported.
    SELECT f.ord, (bal.total + coalesce(d.delta, 0))::text
      INTO floor_index, floor_balance
      FROM unnest(f_accounts, f_currencies, f_mins) WITH ORDINALITY AS f(account, currency, min, ord)
      CROSS JOIN LATERAL (SELECT coalesce(sum(l.balance), 0) AS total
                            FROM unnest(l_acc, l_cur, l_bal) AS l(account, currency, balance)
                           WHERE l.account = f.account AND l.currency = f.currency) bal
      CROSS JOIN LATERAL (SELECT sum(p.delta) AS delta
                            FROM unnest(p_accounts, p_currencies, p_deltas) AS p(account, currency, delta)
                           WHERE p.account = f.account AND p.currency = f.currency) d
     WHERE bal.total + coalesce(d.delta, 0) < f.min
     ORDER BY f.ord LIMIT 1;
    IF FOUND THEN
      DELETE FROM claims WHERE id = ANY (new_ids);
      outcome := 3;
      RETURN;
    END IF;

    -- 4. Postings: entries (unstriped: seq and balance_after now; striped: queued), then balances.
    WITH p AS (
      SELECT p.*, s.stripes IS NOT NULL AS striped,
             CASE WHEN s.stripes IS NULL THEN 0 ELSE p_stripe % s.stripes END::smallint AS stripe
        FROM unnest(p_accounts, p_currencies, p_deltas, p_memos) WITH ORDINALITY
             AS p(account, currency, delta, memo, ord)
        LEFT JOIN striped_accounts s USING (account)
    ), l AS (
      SELECT * FROM unnest(l_acc, l_cur, l_str, l_bal, l_cnt) AS l(account, currency, stripe, balance, postings)
    ), plain AS (
      INSERT INTO ledger_entries (account, currency, seq, at, claimant, delta, balance_after, memo)
      SELECT p.account, p.currency, l.postings + row_number() OVER w, p_at, p_claimant, p.delta,
             l.balance + sum(p.delta) OVER w, p.memo
        FROM p JOIN l ON (l.account, l.currency, l.stripe) = (p.account, p.currency, 0)
       WHERE NOT p.striped
      WINDOW w AS (PARTITION BY p.account, p.currency ORDER BY p.ord ROWS UNBOUNDED PRECEDING)
    ), queued AS (
      INSERT INTO striped_entries (account, currency, at, claimant, delta, memo)
      SELECT account, currency, p_at, p_claimant, delta, memo FROM p WHERE striped ORDER BY ord
    )
    UPDATE balances b SET balance = b.balance + d.delta, postings = b.postings + d.n
      FROM (SELECT account, currency, stripe, sum(delta) AS delta, count(*) AS n
              FROM p GROUP BY account, currency, stripe) d
     WHERE (b.account, b.currency, b.stripe) = (d.account, d.currency, d.stripe);
  END IF;

  -- 5. Documents: the last write of each key wins; NULL value deletes.
  IF coalesce(cardinality(w_keys), 0) > 0 THEN
    WITH last AS (
      SELECT DISTINCT ON (collection, key) collection, key, value
        FROM unnest(w_collections, w_keys, w_values) WITH ORDINALITY AS w(collection, key, value, ord)
       ORDER BY collection, key, ord DESC
    ), del AS (
      DELETE FROM documents d USING last
       WHERE last.value IS NULL AND (d.collection, d.key) = (last.collection, last.key)
    )
    INSERT INTO documents (collection, key, value)
    SELECT collection, key, value FROM last WHERE value IS NOT NULL ORDER BY collection, key
    ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value;
  END IF;
  outcome := 0;
END $$;

-- Gives entries of striped accounts their per-account seq and balance_after, in one
-- statement, one sequencer at a time. Returns how many it sequenced.
CREATE FUNCTION scrip_sequence_striped(max_rows int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(7236481001);
  WITH moved AS (
    DELETE FROM striped_entries
     WHERE id IN (SELECT id FROM striped_entries ORDER BY id LIMIT max_rows)
    RETURNING *
  ), numbered AS (
    SELECT m.*, coalesce(h.next_seq, 1) + row_number() OVER w - 1 AS seq,
           coalesce(h.balance, 0) + sum(m.delta) OVER w AS balance_after
      FROM moved m LEFT JOIN striped_heads h USING (account, currency)
    WINDOW w AS (PARTITION BY m.account, m.currency ORDER BY m.id ROWS UNBOUNDED PRECEDING)
  ), ins AS (
    INSERT INTO ledger_entries (account, currency, seq, at, claimant, delta, balance_after, memo)
    SELECT account, currency, seq, at, claimant, delta, balance_after, memo FROM numbered
  ), heads AS (
    INSERT INTO striped_heads (account, currency, next_seq, balance)
    SELECT account, currency, max(seq) + 1, (array_agg(balance_after ORDER BY seq DESC))[1]
      FROM numbered GROUP BY account, currency
    ON CONFLICT (account, currency)
    DO UPDATE SET next_seq = excluded.next_seq, balance = excluded.balance
  )
  SELECT count(*) INTO n FROM numbered;
  RETURN n;
END $$;
