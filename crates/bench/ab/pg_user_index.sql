-- The cost of an index on placements (user_id, seq): psql -v withidx="SELECT 1;" (without)
-- or -v withidx="CREATE INDEX placements_user ON placements (user_id, seq);" (with) -f this file.
\timing on
DROP TABLE IF EXISTS placements;
CREATE TABLE placements (seq bigint PRIMARY KEY, x smallint NOT NULL, y smallint NOT NULL, color smallint NOT NULL, user_id bigint NOT NULL, ts timestamptz NOT NULL);
CREATE INDEX placements_pixel ON placements (x, y, seq DESC);
CREATE INDEX placements_ts ON placements USING brin (ts);
:withidx
CREATE OR REPLACE PROCEDURE fill(batches int, per int) LANGUAGE plpgsql AS $$
DECLARE b int; base bigint;
BEGIN
  FOR b IN 0..batches-1 LOOP
    SELECT coalesce(max(seq),0) INTO base FROM placements;
    INSERT INTO placements SELECT base + g, (random()*2047)::int, (random()*2047)::int, (random()*15)::int, (random()*1000000)::bigint, now() FROM generate_series(1, per) g;
    COMMIT;
  END LOOP;
END $$;
-- warm: 3M rows, then time 1M more in 1000-row commits
CALL fill(3, 1000000);
CHECKPOINT;
CALL fill(1000, 1000);
SELECT count(*) FROM placements WHERE user_id = 4242;
EXPLAIN ANALYZE SELECT DISTINCT x, y FROM placements WHERE user_id = ANY(ARRAY[4242]::bigint[]) AND seq <= 9999999;
