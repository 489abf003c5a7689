-- The baseline of BenchmarkHotKeyReplicas (docs/BENCHMARKS.md): one quota row, as
-- the quota store keeps it, with a limit no run reaches.
--   psql -h 127.0.0.1 -U postgres test -f docs/bench/pgbench-setup.sql
--   pgbench -h 127.0.0.1 -U postgres -n -f docs/bench/pgbench-consume.sql -c 8 -j 2 -T 10 test
DROP TABLE IF EXISTS bench_quota;
CREATE TABLE bench_quota (
	id text PRIMARY KEY,
	monthly_call_limit bigint NOT NULL,
	calls_used bigint NOT NULL,
	cycle_start timestamptz NOT NULL
);
INSERT INTO bench_quota VALUES ('hot', 1000000000000, 0, now());
