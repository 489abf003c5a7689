-- One call of one hot key, the way a statement per call spends it (wave 1's
-- Consume): restart the 30-day cycle when due, else count one call if any is
-- left, and return the quota. Setup: pgbench-setup.sql.
UPDATE bench_quota SET
	cycle_start = CASE WHEN cycle_start <= now() - interval '30 days' THEN now() ELSE cycle_start END,
	calls_used = CASE WHEN cycle_start <= now() - interval '30 days' THEN 1 ELSE calls_used + 1 END
WHERE id = 'hot' AND (cycle_start <= now() - interval '30 days' OR calls_used < monthly_call_limit)
RETURNING monthly_call_limit, calls_used, cycle_start;
