-- 0003: a generation per tenant, moved by every change of its vectors, as SQLite's
-- vector_generations: a server keeps a tenant's matrix in memory while the generation it
-- read before loading the rows is still the current one, instead of reading every vector
-- for every search.

CREATE TABLE vector_generations (
    tenant     TEXT COLLATE "C" PRIMARY KEY,
    generation BIGINT NOT NULL
);

CREATE FUNCTION mcpck_bump_vector_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD.tenant;
    ELSE
        changed := NEW.tenant;
    END IF;
    INSERT INTO vector_generations AS g (tenant, generation) VALUES (changed, 1)
    ON CONFLICT (tenant) DO UPDATE SET generation = g.generation + 1;
    IF TG_OP = 'UPDATE' AND OLD.tenant <> NEW.tenant THEN
        INSERT INTO vector_generations AS g (tenant, generation) VALUES (OLD.tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET generation = g.generation + 1;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER vectors_generation
AFTER INSERT OR UPDATE OR DELETE ON vectors
FOR EACH ROW EXECUTE FUNCTION mcpck_bump_vector_generation();
