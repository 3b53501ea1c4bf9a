"""Settings: the only module that reads environment variables.

Every knob is a field of :class:`Settings` (prefix ``MCP_CHECKPOINT_``, nested groups joined
with ``__``, e.g. ``MCP_CHECKPOINT_LIMITS__MAX_STEP_BYTES=65536``). ``Settings`` is built once
in ``cli/`` and passed down explicitly; nothing else looks at the environment.

How a variable becomes a value (what pydantic-settings did for this package, without
importing it on every start): names match in any case; a list, dict or group value is
JSON (``MCP_CHECKPOINT_CHECKPOINT__TRIGGER_TOOLS='["git_commit"]'``,
``MCP_CHECKPOINT_LIMITS='{"max_step_bytes": 4096}'``), and a ``__`` variable inside a group
overrides the group's JSON; any other value is the text itself, for pydantic to validate.
A variable naming no setting is ignored; one naming an unknown field of a group is an error.
Keyword arguments of ``Settings(...)`` override the environment, field by field inside a
group.

The annotations here are evaluated as the module runs (no ``from __future__ import
annotations``): pydantic would otherwise compile every field's annotation string while it
builds the classes, on every start.
"""

import json
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeGuard, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "RETIRED_VARIABLES",
    "CheckpointSettings",
    "EmbeddingSettings",
    "HookSettings",
    "HttpSettings",
    "JwtSettings",
    "LimitSettings",
    "MemorySettings",
    "PostgresSettings",
    "RedactionSettings",
    "RehydrateSettings",
    "RetentionSettings",
    "SamplingSettings",
    "Settings",
    "SnapshotSettings",
    "SqliteSettings",
    "VectorSettings",
    "WebhookSettings",
    "default_data_dir",
    "retired_variables",
]

ENV_PREFIX = "MCP_CHECKPOINT_"
ENV_NESTED_DELIMITER = "__"


# Variables an older version read and this one ignores, with what replaced them. A set
# variable is reported once at start-up (``retired_variables``), never an error, so that an
# old environment keeps working.
RETIRED_VARIABLES: dict[str, str] = {
    "MCP_CHECKPOINT_BENCH_NOOP_TOOL": (
        "the server has no 'noop' tool any more; the benchmarks register their own "
        "(python -m bench loop, from a source checkout)"
    ),
}


def retired_variables() -> list[str]:
    """One note for each retired variable that is set in the environment."""
    return [f"{name} is ignored: {why}" for name, why in RETIRED_VARIABLES.items()
            if name in os.environ]


def default_data_dir() -> Path:
    """The per-platform user data directory (XDG on Linux, Application Support on macOS)."""
    import platformdirs  # only when MCP_CHECKPOINT_DATA_DIR is unset

    return Path(platformdirs.user_data_dir("mcp-checkpoint", appauthor=False))


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LimitSettings(_Group):
    """Hard limits on what a client may send. Exceeding one is ``payload_too_large``."""

    max_step_bytes: int = Field(
        262_144, ge=1024, description="UTF-8 bytes of a step's input + output + reasoning."
    )
    max_text_chars: int = Field(
        8_000, ge=64, description="Characters of one text field (objective, an item, a memory)."
    )
    max_list_items: int = Field(
        200, ge=1, description="Items in one list argument (pinned, progress, artifacts...)."
    )
    max_checkpoint_bytes: int = Field(
        131_072, ge=1024, description="UTF-8 bytes of one checkpoint's JSON content."
    )
    max_batch_items: int = Field(100, ge=1, description="Items in one propose_memory batch.")
    max_query_chars: int = Field(2_000, ge=16, description="Characters of a search query.")
    max_search_k: int = Field(50, ge=1, description="Largest k a search may ask for.")
    min_budget_tokens: int = Field(128, ge=16, description="Smallest rehydrate budget.")
    max_budget_tokens: int = Field(1_000_000, ge=256, description="Largest rehydrate budget.")
    max_page_size: int = Field(500, ge=1, description="Largest page of a paginated listing.")
    max_id_chars: int = Field(128, ge=8, description="Characters of a caller-chosen id or key.")
    max_pack_bytes: int = Field(
        268_435_456, ge=4096, description="Bytes of a pack file that import reads or export writes."
    )
    max_pack_unpacked_bytes: int = Field(
        268_435_456,
        ge=4096,
        description=(
            "Bytes of all files of a pack once decompressed (import holds the records in "
            "memory: about 7.5x this at peak)."
        ),
    )
    max_pack_entries: int = Field(10_000, ge=8, description="Files in one pack.")
    max_pack_ratio: int = Field(
        200, ge=2, description="Largest decompressed/compressed size ratio of a pack's file."
    )
    max_export_resource_bytes: int = Field(
        8_388_608, ge=4096, description="Bytes of a pack served by the export:// MCP resource."
    )
    max_json_depth: int = Field(
        64,
        ge=2,
        le=150,
        description=(
            "Nesting depth of a JSON value in a step (input, output) or a checkpoint's state. "
            "At most 150: stored JSON must stay readable by parsers that stop near 200."
        ),
    )


class CheckpointSettings(_Group):
    """When ``record_step`` reports ``checkpoint_due``."""

    trigger_steps: int = Field(
        30, ge=1, description="Steps since the last checkpoint that make one due."
    )
    trigger_token_share: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Share of the run's budget that working-memory tokens may fill.",
    )
    trigger_on_error: bool = Field(
        True, description="An error step makes a checkpoint due until one covers it."
    )
    trigger_tools: list[str] = Field(
        [],
        description="Tool names whose step makes a checkpoint due (e.g. [\"git_commit\"]).",
    )
    trigger_output_patterns: list[str] = Field(
        [],
        description="Regular expressions: a step whose output matches one makes a "
        "checkpoint due (e.g. [\"tests? passed\", \"^Merged\"]).",
    )

    @field_validator("trigger_output_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"trigger_output_patterns: {pattern!r} is not a regular "
                                 f"expression ({exc})") from None
        return patterns
    max_progress_items: int = Field(
        40, ge=1, description="Progress entries kept when checkpoints merge (oldest drop)."
    )
    max_artifacts: int = Field(100, ge=1, description="Artifacts kept when checkpoints merge.")
    max_decisions: int = Field(60, ge=1, description="Decisions kept when checkpoints merge.")


class RehydrateSettings(_Group):
    """How ``rehydrate`` packs a context."""

    default_budget_tokens: int = Field(
        8_000, ge=128, description="Budget of a run that did not choose one."
    )
    step_max_tokens: int = Field(
        500, ge=32, description="Longest rendering of one step (longer ones are cut)."
    )
    memories_k: int = Field(
        8, ge=0,
        description="Fewest memories considered for a context (more are fetched while they "
        "could fill the budget); 0 leaves memories out.",
    )


class RedactionSettings(_Group):
    """Secrets scrubbed from every step before it is stored (MCP, hooks, Python API)."""

    enabled: bool = Field(
        True,
        description=(
            "Replace API keys, bearer tokens, private keys, AWS keys, JWTs, URL credentials "
            "and password=/secret= style values with [REDACTED:<kind>]."
        ),
    )
    extra_patterns: list[str] = Field(
        default=[],
        description=(
            "More regular expressions to redact (Python syntax, whole match replaced), "
            'e.g. \'["ACME-[0-9]{8}"]\'.'
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        import re

        for pattern in self.extra_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction.extra_patterns: {pattern!r}: {exc}") from None
        return self


class HookSettings(_Group):
    """Client hooks (``mcp-checkpoint hook claude-code``): automatic capture."""

    budget_tokens: int = Field(
        2_000,
        ge=128,
        description=(
            "Budget of the context a SessionStart hook injects (the --budget default); "
            "Claude Code shows only a preview of a hook's additionalContext over 10,000 "
            "characters, so the injected text is also kept under max_context_chars."
        ),
    )
    max_context_chars: int = Field(
        9_500, ge=500, le=10_000, description="Characters of the injected context, at most."
    )
    continue_project_run: bool = Field(
        True,
        description=(
            "A new session (startup, clear, fork) in a project continues the project's "
            "latest active run; false = each new session starts its own run."
        ),
    )
    deadline_seconds: float = Field(
        8.0,
        gt=0,
        le=600,
        description="A hook process gives up (exit 0, logged) after this long.",
    )


class SamplingSettings(_Group):
    """Server-side distillation through the client's LLM (MCP sampling)."""

    enabled: bool = Field(True, description="Ask the client's model to distill when it can.")
    max_tokens: int = Field(1_500, ge=64, description="max_tokens of the sampling request.")
    max_input_tokens: int = Field(6_000, ge=256, description="Steps shown to the model.")
    timeout_seconds: float = Field(
        60.0, gt=0, description="How long checkpoint waits for the client's model; then rules."
    )


class MemorySettings(_Group):
    """Semantic memory."""

    batch_ttl_seconds: int = Field(
        86_400, ge=1, description="A proposed batch expires after this long."
    )
    duplicate_threshold: float = Field(
        0.85, gt=0, le=1, description="Similarity at which a proposal is a near duplicate."
    )


class EmbeddingSettings(_Group):
    """The embedder behind semantic search (vectors beside the lexical index)."""

    provider: Literal["auto", "sentence-transformers", "hashing", "none"] = Field(
        "auto",
        description=(
            "auto = sentence-transformers when the 'embeddings' extra is installed, else none "
            "(lexical search only); hashing = dependency-free feature hashing of words "
            "(tests, or similarity by shared words); none = no vectors."
        ),
    )
    model: str = Field(
        "all-MiniLM-L6-v2",
        description=(
            "all-MiniLM-L6-v2 = the model packaged with the extra; or any sentence-transformers "
            "model name (loaded offline from the Hugging Face cache) or local directory."
        ),
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Texts encoded per model batch.")
    verify_sha256: bool = Field(
        True,
        description="Check the weights file against its known sha256 before loading it.",
    )
    weights_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description=(
            "Expected sha256 of a local model directory's weights file (model.safetensors "
            "or pytorch_model.bin); pins the weights and becomes part of the model id. The "
            "packaged model's is built in."
        ),
    )
    torch_threads: int = Field(
        1,
        ge=0,
        description=(
            "CPU threads torch may use to encode (0 = torch's default, one per core). One "
            "keeps a core free for the server and is faster when the machine is busy."
        ),
    )
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description=(
            "What runs the loaded model: onnx = ONNX Runtime (exported once to "
            "data_dir/models, checked against torch at every start; about 2x faster per "
            "query here), torch = PyTorch, auto = onnx when onnxruntime is installed (it is "
            "part of the embeddings extra) and the model's pipeline allows, else torch."
        ),
    )
    hashing_dimension: int = Field(
        256, ge=8, le=65_536, description="Vector length of the hashing provider."
    )


class SqliteSettings(_Group):
    """The embedded SQLite store."""

    busy_timeout_ms: int = Field(10_000, ge=0, description="Wait for another writer's lock.")
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = Field(
        "FULL", description="FULL makes every acknowledged write survive power loss."
    )
    group_commit: bool = Field(
        True,
        description=(
            "Steps recorded together share one transaction and one fsync; each is "
            "acknowledged only after that commit."
        ),
    )


class RetentionSettings(_Group):
    """What ``mcp-checkpoint runs prune`` removes when no option says otherwise."""

    finished_runs_days: float | None = Field(
        None,
        gt=0,
        description=(
            "Prune finished runs (completed, failed, abandoned) unchanged for this many "
            "days; unset = only when --older-than is given."
        ),
    )
    keep_checkpoints: int = Field(
        1, ge=1, description="Newest checkpoints a pruned run keeps (with the steps after them)."
    )


class PostgresSettings(_Group):
    """The PostgreSQL store (``store_url = postgresql://...``): its connection pool and how
    long an operation may take before it is ``backend_unavailable``."""

    pool_min_size: int = Field(1, ge=0, description="Connections the pool keeps open.")
    pool_max_size: int = Field(10, ge=1, description="Most connections the pool opens.")
    pool_max_idle_s: float = Field(
        300.0, gt=0, description="An idle connection above pool_min_size closes after this."
    )
    pool_max_lifetime_s: float = Field(
        3600.0, gt=0, description="A connection is replaced after this long."
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Longest wait to open one connection."
    )
    pool_timeout_s: float = Field(
        5.0, gt=0, description="Longest wait for a free connection from the pool."
    )
    reconnect_timeout_s: float = Field(
        30.0,
        gt=0,
        description=(
            "While the server is unreachable the pool retries with a doubling delay; past "
            "this it starts over at 1 s, so recovery after a long outage stays prompt."
        ),
    )
    statement_timeout_ms: int = Field(
        10_000, ge=0, description="Server-side limit of one statement (0 = none)."
    )
    operation_timeout_s: float = Field(
        15.0,
        gt=0,
        description=(
            "Client-side limit of one store call (pool wait + queries + commit); past it "
            "the call fails with backend_unavailable instead of hanging on a lost server."
        ),
    )
    migration_lock_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for another process that is migrating."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("postgres.pool_min_size must not exceed postgres.pool_max_size")
        return self


class VectorSettings(_Group):
    """Where memory vectors live (the vector half of semantic search)."""

    backend: Literal["auto", "sqlite", "qdrant", "memory"] = Field(
        "auto",
        description=(
            "auto = in the store's own file or database when the store is SQLite or "
            "PostgreSQL, in process for 'memory://'; 'qdrant' = a Qdrant server "
            "(qdrant_url) or local folder (qdrant_path; needs the 'qdrant' extra)."
        ),
    )
    qdrant_url: str | None = Field(None, description="URL of a Qdrant server.")
    qdrant_path: str | None = Field(
        None,
        description=(
            "Folder of Qdrant local mode (relative paths resolve inside data_dir; ':memory:' "
            "keeps it in process). Local mode locks the folder to one process. Used when "
            "qdrant_url is unset; the default is data_dir/qdrant."
        ),
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key of the Qdrant server.")
    qdrant_collection: str = Field(
        "mcp_checkpoint_memories", min_length=1, description="The Qdrant collection to use."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.qdrant_url is not None and self.qdrant_path is not None:
            raise ValueError("set vectors.qdrant_url or vectors.qdrant_path, not both")
        return self

    def qdrant_local_path(self, data_dir: Path) -> str:
        """The local-mode folder (or ':memory:') when no qdrant_url is set."""
        if self.qdrant_path is None:
            return str(data_dir / "qdrant")
        if self.qdrant_path == ":memory:":
            return self.qdrant_path
        path = Path(self.qdrant_path).expanduser()
        return str(path if path.is_absolute() else data_dir / path)


class SnapshotSettings(_Group):
    """Workspace files kept with checkpoints (``checkpoint(files=...)``)."""

    max_files: int = Field(10_000, ge=1, description="Files in one snapshot.")
    max_file_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Bytes of one file of a snapshot."
    )
    max_total_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="Bytes of all files of one snapshot."
    )


class WebhookSettings(_Group):
    """Events leaving the server: signed JSON posts on checkpoints, memory commits and run
    status changes (off unless a URL is set)."""

    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Where to POST events (http or https). Unset: no webhook.",
    )
    secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key that signs every post (required with url).",
    )
    events: list[Literal["checkpoint.created", "memory.committed", "run.status_changed"]] = (
        Field(
            ["checkpoint.created", "memory.committed", "run.status_changed"],
            description="Which events to post.",
        )
    )
    max_queue: int = Field(
        1_000, ge=1, description="Events waiting to be posted; past it new events are dropped."
    )
    max_attempts: int = Field(5, ge=1, le=20, description="Tries per event before giving up.")
    timeout_seconds: float = Field(5.0, gt=0, description="Longest wait for one post.")
    backoff_seconds: float = Field(
        1.0, ge=0, description="Wait before the first retry; doubles with each retry."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.url is not None and self.secret is None:
            raise ValueError("webhook.url needs webhook.secret (every post is signed)")
        return self


class HttpSettings(_Group):
    """Remote serving (``serve --transport http|sse``): who may connect, what is exposed."""

    public_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description=(
            "The URL clients use for the MCP endpoint (e.g. https://mcp.example.com/mcp), "
            "behind a reverse proxy; advertised in WWW-Authenticate (resource_metadata, with JWT "
            "verification) and "
            "its host is accepted by the Host/Origin check."
        ),
    )
    allowed_hosts: list[str] = Field(
        default=[],
        description=(
            "Extra Host header values accepted (DNS-rebinding protection), e.g. "
            "'mcp.example.com' or 'mcp.example.com:*'. Loopback names are always accepted "
            "on a loopback bind."
        ),
    )
    allowed_origins: list[str] = Field(
        default=[],
        description="Extra Origin header values accepted, e.g. 'https://app.example.com'.",
    )
    dns_rebinding_protection: bool = Field(
        True, description="Reject requests whose Host or Origin is not allowed (HTTP 421/403)."
    )
    metrics: Literal["auth", "open", "off"] = Field(
        "auth",
        description=(
            "/metrics: auth = needs a bearer token with the 'metrics' scope (open when the "
            "server runs without auth); open = anyone who can reach the port; off = 404."
        ),
    )
    shutdown_timeout_seconds: float = Field(
        30, gt=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    session_idle_timeout_seconds: float = Field(
        1800, gt=0, description="A stateful streamable-HTTP session idle this long is closed."
    )
    resume_events: int = Field(
        1000, ge=0, description=(
            "Messages a streamable-HTTP session keeps so a client that reconnects with "
            "Last-Event-ID gets what it missed (0: streams are not resumable)."
        ),
    )
    resume_bytes: int = Field(
        8 * 1024 * 1024, ge=0,
        description="Bytes of JSON a session keeps for resuming (the oldest go first).",
    )
    sse_retry_ms: int = Field(
        1000, ge=0, description="The SSE 'retry' hint: how long a client waits to reconnect."
    )
    # -- connection limits (see docs/remote-hosting.md: which ones a proxy also sets) ------
    max_header_bytes: int = Field(
        65_536, ge=4096,
        description="Bytes of a request's line and headers; more is answered 431 and closed.",
    )
    header_timeout_seconds: float = Field(
        10, gt=0, description="Time a client has to send a request's headers (else 408)."
    )
    keep_alive_timeout_seconds: int = Field(
        65, ge=1,
        description="An idle keep-alive connection is closed after this long (above the 60 s "
        "idle timeout of common proxies and load balancers, so they close first).",
    )
    max_connections: int = Field(
        1000, ge=16,
        description="Open connections; at the cap a new one evicts the connection that has "
        "waited longest for its headers (lowered to fit the process's file limit).",
    )
    # -- quotas per caller (0 = no limit) ------------------------------------------------
    max_sessions_per_token: int = Field(
        100, ge=0, description="Open streamable-HTTP sessions of one token (429 beyond)."
    )
    max_sessions_per_tenant: int = Field(
        1000, ge=0, description="Open streamable-HTTP sessions of one tenant (429 beyond)."
    )
    requests_per_second_per_token: float = Field(
        100, ge=0, description="Sustained request rate of one token (token bucket; 429)."
    )
    request_burst_per_token: int = Field(
        400, ge=1, description="Requests one token may send at once above the sustained rate."
    )
    max_concurrent_requests_per_token: int = Field(
        64, ge=0, description="Requests of one token in flight at once (429 beyond)."
    )
    refusal_delay_seconds: float = Field(
        1.0, ge=0, le=30,
        description="A token's 429 (rate or sessions) is answered after this pause while the "
        "token has requests in flight to spare, so a client that retries at once is slowed "
        "instead of costing the server all it can send (0 = answer at once).",
    )
    max_subscriptions_per_session: int = Field(
        100, ge=0, description="resources/subscribe URIs one session may hold."
    )
    max_subscription_uri_chars: int = Field(
        2048, ge=64, description="Characters of a subscribed resource URI."
    )


class JwtSettings(_Group):
    """Optional OAuth access tokens (JWTs) verified with the issuer's JWKS, beside the
    server's own bearer tokens (``mcp-checkpoint tokens create``)."""

    issuer: str | None = Field(
        None, description="Expected 'iss' claim; setting it turns JWT verification on."
    )
    audience: str | None = Field(
        None, description="Expected 'aud' claim (default: http.public_url)."
    )
    jwks_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Where the issuer publishes its signing keys (JWKS).",
    )
    algorithms: list[str] = Field(
        default=["RS256", "ES256"], min_length=1, description="Accepted signing algorithms."
    )
    tenant_claim: str = Field("tenant", min_length=1, description="Claim naming the tenant.")
    scope_claim: str = Field(
        "scope", min_length=1, description="Claim with the scopes (space-separated or a list)."
    )
    scope_prefix: str = Field(
        "", description="Prefix of this server's scopes in the token, e.g. 'mcp-checkpoint:'."
    )
    leeway_seconds: int = Field(30, ge=0, description="Clock skew tolerated on exp/nbf.")
    jwks_cache_seconds: int = Field(300, ge=0, description="How long fetched keys are reused.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.issuer is not None and self.jwks_url is None:
            raise ValueError("jwt.issuer needs jwt.jwks_url (where its signing keys are)")
        return self


class Settings(BaseModel):
    """All configuration of mcp-checkpoint: the ``MCP_CHECKPOINT_*`` environment, overridden
    by keyword arguments (see the module docstring for how variables are read)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the SQLite file (and later exports) live; created on first use.",
    )
    store_url: str | None = Field(
        None,
        description=(
            "Storage: unset = SQLite file in data_dir; 'sqlite:///PATH' = that file; "
            "'memory://' = in-process, nothing persisted (tests, experiments); "
            "'postgresql://user:password@host:port/db' = PostgreSQL (the 'postgres' extra)."
        ),
    )
    tenant: str = Field("local", min_length=1, description="Tenant of a stdio server.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    limits: LimitSettings = LimitSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    rehydrate: RehydrateSettings = RehydrateSettings()
    sampling: SamplingSettings = SamplingSettings()
    memory: MemorySettings = MemorySettings()
    sqlite: SqliteSettings = SqliteSettings()
    postgres: PostgresSettings = PostgresSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    vectors: VectorSettings = VectorSettings()
    retention: RetentionSettings = RetentionSettings()
    redaction: RedactionSettings = RedactionSettings()
    hooks: HookSettings = HookSettings()
    http: HttpSettings = HttpSettings()
    webhook: WebhookSettings = WebhookSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    jwt: JwtSettings = JwtSettings()

    def __init__(self, **values: Any) -> None:
        super().__init__(**_merged(_environment(os.environ), values))

    @model_validator(mode="after")
    def _check(self) -> Self:
        lim = self.limits
        if lim.min_budget_tokens > lim.max_budget_tokens:
            raise ValueError("limits.min_budget_tokens must not exceed limits.max_budget_tokens")
        budget = self.rehydrate.default_budget_tokens
        if not lim.min_budget_tokens <= budget <= lim.max_budget_tokens:
            raise ValueError(
                "rehydrate.default_budget_tokens must lie within "
                "[limits.min_budget_tokens, limits.max_budget_tokens]"
            )
        if self.store_url is not None and not self.store_url.startswith(
            ("sqlite://", "memory://", "postgresql://", "postgres://")
        ):
            raise ValueError(
                "store_url must start with 'sqlite://', 'memory://' or 'postgresql://'"
            )
        return self

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file this configuration points at."""
        if self.store_url and self.store_url.startswith("sqlite://"):
            raw = self.store_url.removeprefix("sqlite://")
            # sqlite:///abs/path -> /abs/path ; sqlite://rel -> data_dir/rel
            return Path(raw) if raw.startswith("/") else self.data_dir / raw
        return self.data_dir / "mcp-checkpoint.db"


def _environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The values the ``MCP_CHECKPOINT_*`` variables of ``environ`` give, nested by group."""
    prefix = ENV_PREFIX.lower()
    found: dict[str, Any] = {}
    nested: list[tuple[str, list[str], str]] = []
    for name, text in environ.items():
        key = name.lower()
        if not key.startswith(prefix):
            continue
        head, *path = key.removeprefix(prefix).split(ENV_NESTED_DELIMITER)
        field = Settings.model_fields.get(head)
        if field is None:
            continue  # not a setting: a retired variable, or none of ours
        if not path:
            found[head] = _decoded(text, field.annotation)
        elif _is_group(field.annotation):
            nested.append((head, path, text))
    # Sorted: the same environment gives the same value whatever the variables' order.
    for head, path, text in sorted(nested):
        node = found.setdefault(head, {})
        if not isinstance(node, dict):
            continue  # the group's own variable is not a JSON object: validation says so
        *parents, leaf = path
        for part in parents:
            child = node.get(part)
            node = child if isinstance(child, dict) else node.setdefault(part, {})
        group = Settings.model_fields[head].annotation
        inner = group.model_fields.get(leaf) if _is_group(group) and not parents else None
        node[leaf] = _decoded(text, inner.annotation) if inner is not None else text
    return found


def _is_group(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_structured(annotation: Any) -> bool:
    """Whether a field's environment value is JSON: a list, dict, set, tuple or group,
    possibly optional."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_is_structured(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin in (list, dict, set, frozenset, tuple) or _is_group(annotation)


def _decoded(text: str, annotation: Any) -> Any:
    """``text`` as JSON when the field is structured and it parses, else the text itself
    (pydantic then reports a text that is not the JSON it needs, naming the field)."""
    if _is_structured(annotation):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _merged(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top; where both hold a dict, the dicts merge."""
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merged[key] = _merged(below, value)
        else:
            merged[key] = value
    return merged
