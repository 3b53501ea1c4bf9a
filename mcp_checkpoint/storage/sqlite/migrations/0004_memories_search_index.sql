-- 0004: lexical search weighs words by their frequency among the memories it searches (a
-- tenant's active memories, maybe of one scope and kind); this index makes counting those
-- a range scan instead of a walk over the tenant's memories.
CREATE INDEX memories_search ON memories (tenant, status, scope, kind);
