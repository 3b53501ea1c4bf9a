-- 0007: a run may name its project (the working directory a client adapter runs in), so an
-- adapter can find the project's latest active run and listings can filter by project.

ALTER TABLE runs ADD COLUMN project TEXT;

CREATE INDEX runs_by_project ON runs (tenant, project, updated_us DESC, run_id DESC);
