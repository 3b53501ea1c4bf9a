-- 0008: step search stays fast on a long ledger while steps are written.
--
-- A GIN index queues new entries in a pending list (4 MB by default) that every search
-- reads through, unsorted, until a vacuum or a full list merges it: with a busy ledger
-- that was ~20 ms on every search_steps. 256 kB bounds that read (~1 ms); an append that
-- fills the list merges it, sixteen times as often and sixteen times as briefly. The list
-- left by earlier writes is merged now.
--
-- search_steps ranks the newest matches (core decides how many): within a run the key
-- gives them newest first; across runs this index does, so a common word stops after
-- those instead of reading every match (the planner keeps the GIN index for rare words).

ALTER INDEX steps_fts SET (gin_pending_list_limit = 256);

SELECT gin_clean_pending_list('steps_fts'::regclass);

CREATE INDEX steps_by_created ON steps (tenant, created_at);
