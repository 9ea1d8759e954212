INSERT INTO striped_accounts VALUES ('\x04'::bytea || '\x0011'::bytea || convert_to('coins-outstanding','UTF8'), 4),
                                    ('\x04'::bytea || '\x0007'::bytea || convert_to('funding','UTF8'), 4);
\set out '''\\x040011''::bytea || convert_to(''coins-outstanding'',''UTF8'')'
\set fund '''\\x040007''::bytea || convert_to(''funding'',''UTF8'')'
-- 1 redemption by m1 of coins 10, 11
SELECT * FROM scrip_apply_unit('\x01aa', 5, 0, ARRAY['\x0810','\x0811']::bytea[], ARRAY['\xd010','\xd011']::bytea[],
  ARRAY[:out, '\x03aa']::bytea[], ARRAY['EUR','EUR']::bytea[], ARRAY[-2,2]::numeric[], ARRAY['redeem','redeem'],
  NULL, NULL, NULL, NULL, NULL, NULL);
-- 2 retry
SELECT * FROM scrip_apply_unit('\x01aa', 99, 1, ARRAY['\x0810','\x0811']::bytea[], ARRAY['\xd010','\xd011']::bytea[],
  ARRAY[:out, '\x03aa']::bytea[], ARRAY['EUR','EUR']::bytea[], ARRAY[-2,2]::numeric[], ARRAY['redeem','redeem'],
  NULL, NULL, NULL, NULL, NULL, NULL);
-- 3 m2 tries 12, 11
SELECT * FROM scrip_apply_unit('\x01bb', 9, 2, ARRAY['\x0812','\x0811']::bytea[], ARRAY['\xd012','\xd011']::bytea[],
  ARRAY[:out, '\x03bb']::bytea[], ARRAY['EUR','EUR']::bytea[], ARRAY[-2,2]::numeric[], ARRAY['redeem','redeem'],
  NULL, NULL, NULL, NULL, NULL, NULL);
SELECT id FROM claims ORDER BY id;
-- 4 deposit 10 then 11 withdrawals with floor, one transaction (batch)
BEGIN;
SELECT outcome FROM scrip_apply_unit('\x04', 0, 3, NULL, NULL,
  ARRAY[:fund, '\x01cc']::bytea[], ARRAY['EUR','EUR']::bytea[], ARRAY[-10,10]::numeric[], ARRAY['deposit','deposit'],
  NULL, NULL, NULL, NULL, NULL, NULL);
SELECT i, o.outcome, o.floor_index, o.floor_balance FROM generate_series(1,11) i,
 LATERAL scrip_apply_unit('\x02cc', 1, i, ARRAY['\x06'::bytea || int4send(i)], ARRAY['\x00']::bytea[],
  ARRAY['\x01cc', :out]::bytea[], ARRAY['EUR','EUR']::bytea[], ARRAY[-1,1]::numeric[], ARRAY['withdraw','withdraw'],
  ARRAY['\x01cc']::bytea[], ARRAY['EUR']::bytea[], ARRAY[0]::numeric[], NULL, NULL, NULL) o;
COMMIT;
SELECT count(*) AS idem_claims FROM claims WHERE id >= '\x06' AND id < '\x07';
-- floor on a striped account: funding must stay >= -10
SELECT outcome, floor_index, floor_balance FROM scrip_apply_unit('\x04', 2, 0, NULL, NULL,
  ARRAY[:fund, '\x01dd']::bytea[], ARRAY['EUR','EUR']::bytea[], ARRAY[-1,1]::numeric[], ARRAY['x','x'],
  ARRAY[:fund]::bytea[], ARRAY['EUR']::bytea[], ARRAY[-10]::numeric[], NULL, NULL, NULL);
-- 5 documents
SELECT outcome FROM scrip_apply_unit('\x04', 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  ARRAY['docs','docs','docs','docs']::bytea[], ARRAY['b','a','b','c']::bytea[], ARRAY['v1','va',NULL,'vc']::bytea[]);
SELECT convert_from(key,'UTF8') k, convert_from(value,'UTF8') v FROM documents ORDER BY collection, key;
-- balances listing and conservation
SELECT account, currency, sum(balance) FROM balances GROUP BY 1,2 HAVING sum(postings) > 0 ORDER BY 1,2;
SELECT currency, sum(balance) AS must_be_zero FROM balances GROUP BY currency;
SELECT scrip_sequence_striped(10000) AS sequenced;
SELECT account, currency, seq, delta, balance_after, memo FROM ledger_entries ORDER BY account, currency, seq;
-- invariant per striped account
SELECT a.account, (SELECT sum(balance) FROM balances b WHERE b.account=a.account) AS stripes,
       (SELECT balance FROM striped_heads h WHERE h.account=a.account) +
       (SELECT coalesce(sum(delta),0) FROM striped_entries e WHERE e.account=a.account) AS sequenced_plus_pending
FROM striped_accounts a;
