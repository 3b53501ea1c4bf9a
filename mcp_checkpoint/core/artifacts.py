"""What steps name that a resumed model needs verbatim: files, commits, URLs, test ids,
tickets and identifiers, found by rules and ranked by kind with a quota each.

The rule: keep an exact name the model could not guess back — a path, a commit hash, a
whole URL, a test id, a ticket, a name defined or used in the work — and leave out what
the language or its standard library already names (``m.group``, ``s.encode``,
``re.compile``, ``print``, ``__init__``). Within a kind, what the agent typed itself (its
commands, edits, reasoning), defined, or saw fail ranks above what it merely read; ties go
to the more recent. No kind can crowd out the others: each has a share of the slots, and
the slots a kind leaves unused go to the others. A long output is read at its head and
its tail, where what it names mostly sits, so the cost of a step is bounded.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mcp_checkpoint.core.models import Artifact, ArtifactKind

__all__ = ["GIT_COMMAND", "KIND_ORDER", "Finder", "merge_ranked", "render_artifacts", "select"]

# Display and tie-break order, and each kind's share of the slots.
KIND_ORDER: tuple[ArtifactKind, ...] = ("url", "commit", "ticket", "test", "file", "identifier")
_SHARES: dict[ArtifactKind, float] = {
    "url": 0.10,
    "commit": 0.08,
    "ticket": 0.06,
    "test": 0.12,
    "file": 0.24,
    "identifier": 0.40,
}
_LABELS: dict[ArtifactKind, str] = {
    "url": "URLs",
    "commit": "commits",
    "ticket": "tickets",
    "test": "tests",
    "file": "files",
    "identifier": "names",
}
_MAX_VALUE_CHARS = 300
_HEAD_CHARS = 16_000
_TAIL_CHARS = 8_000
_CHUNK_ITEMS = 8

# -- URLs ----------------------------------------------------------------------------------

# A "|" belongs to a URL (a quoted CGI argument such as "?ls%20%2e|"): a shell pipe
# stands after a space.
_URL = re.compile(r"\b(?:https?|wss?|ftp|ssh|git|file)://[^\s'\"<>()\[\]{}`\\^]+")
_SCP_GIT = re.compile(r"\bgit@[\w.-]+:[\w./-]+\.git\b")
_URL_TRAILING = ".,;:!?*'\""
# Hosts whose URLs are document boilerplate (XML namespaces, DTDs, schema ids), not places
# the work went.
_BOILERPLATE_HOSTS = (
    "www.w3.org/", "schemas.xmlsoap.org/", "schemas.microsoft.com/", "json-schema.org/",
    "xmlns.com/", "purl.org/", "ns.adobe.com/",
)

# -- commits -------------------------------------------------------------------------------

_HEX = r"[0-9a-f]{7,40}"
_COMMIT_FORMS = (
    re.compile(rf"^\[[^\]\s]+(?: \(root-commit\))? ({_HEX})\]", re.MULTILINE),  # git commit
    re.compile(rf"\bcommit ({_HEX})\b"),  # git log / git show
    re.compile(rf"(?<![\w.])({_HEX})\.\.\.?({_HEX})(?![\w.])"),  # push / fetch / ranges
    re.compile(rf"\bHEAD is now at ({_HEX})\b"),
    re.compile(rf"^(?:\* )?({_HEX}) (?=\S)", re.MULTILINE),  # log --oneline (git steps)
    re.compile(rf"\bgit \w[\w-]*(?: [^\n]{{0,200}}?)? ({_HEX})\b"),  # git show/revert/checkout HASH
)
_ONELINE = 4  # index of the --oneline form: only believed in the output of a git command
# A substring each form needs (a form whose hint is absent is not tried).
_COMMIT_HINTS = ("[", "commit ", "..", "HEAD is now at", "", "git ")
GIT_COMMAND = re.compile(r"(?<![\w-])git\s+\w")

# -- tests ---------------------------------------------------------------------------------

_TEST_FORMS = (
    # pytest node ids: path/test_x.py::Class::test_name[param]
    re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.py::[\w.:-]+(?:\[[^\]\s]*\])?)"),
    # cargo test / libtest: test tests::name ... FAILED
    re.compile(r"^test ([\w:]+) \.\.\. (?:FAILED|ok|ignored)", re.MULTILINE),
    # go test: --- FAIL: TestName
    re.compile(r"^[ \t]*--- (?:FAIL|PASS|SKIP): (\w+)", re.MULTILINE),
    # unittest: FAIL: test_name (module.Class.test_name)
    re.compile(r"^(?:FAIL|ERROR): (\w+) \(([\w.]+)\)", re.MULTILINE),
)

_TEST_HINTS: tuple[tuple[str, ...], ...] = (
    ("::",), (" ... ",), ("--- ",), ("FAIL: ", "ERROR: "),
)

# -- tickets -------------------------------------------------------------------------------

_TICKET = re.compile(r"\b([A-Z][A-Z0-9]{1,9})-([1-9]\d{0,5})(?![\w-]|\.\d)")
# Upper-case prefixes that name standards, encodings and algorithms, not trackers.


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NOT_TICKETS = _words(
    "UTF UCS ISO IEC SHA MD RSA DSA ECDSA AES DES CRC HMAC TLS SSL HTTP HTTPS IPV IP TCP UDP "
    "ES ECMA IEEE ANSI GPT BASE ASCII LATIN CP KOI EUC GB BIG WPA USB PCI DDR MP PBKDF BLAKE "
    "ARGON SCRYPT CHACHA SALSA POLY ECB CBC CTR GCM OFB CFB PKCS X TIMES RGB HSL YUV H PY"
)
_HASH_TICKET = re.compile(
    r"(?:(?<![\w#&])(?:issues?|prs?|pull(?: request)?|bugs?|tickets?|fix(?:es|ed)?|"
    r"close[sd]?|resolve[sd]?|refs?|see|gh) ?(#\d{1,6})\b)"
    r"|\((#\d{1,6})\)"
    r"|(?<![\w./-])([\w.-]+/[\w.-]+#\d{1,6})\b",
    re.IGNORECASE,
)

# -- files ---------------------------------------------------------------------------------

_EXTENSIONS = (
    "py|pyi|pyx|ipynb|c|h|cc|cpp|cxx|hpp|hh|rs|go|js|mjs|cjs|ts|tsx|jsx|vue|svelte|java|kt|"
    "kts|scala|swift|m|mm|rb|php|pl|pm|lua|r|jl|ex|exs|erl|hs|ml|clj|dart|cs|fs|vb|sh|bash|"
    "zsh|fish|ps1|bat|sql|graphql|proto|txt|md|rst|adoc|json|jsonl|ya?ml|toml|ini|cfg|conf|"
    "env|xml|html?|css|scss|less|csv|tsv|log|lock|gradle|mk|cmake|dockerfile|tf|nix|"
    "patch|diff|pem|key|crt|pub|der|db|sqlite|parquet|zip|tar|gz|tgz|bz2|xz|whl|so|dll|"
    "exe|bin|elf|o|a|wasm|pdf|png|jpe?g|gif|svg|ico|pcapng|pcap|enc|out|asm|s|traj"
)
_HAS_EXT = re.compile(rf"\.(?:{_EXTENSIONS})$")
_FILE_NAMES = frozenset({"Makefile", "Dockerfile", "Gemfile", "Rakefile", "Procfile"})

# -- identifiers ---------------------------------------------------------------------------

# Word-like tokens (paths, file names, dotted names), with a "(" when called.
_TOKEN = re.compile(r"[\w.+@~/-]+\(?")
_SEPARATORS = str.maketrans({"+": ".", "@": ".", "~": ".", "-": "."})
_FILE_TOKEN = re.compile(rf"[\w+-]+(?:\.[\w+-]+)*\.(?:{_EXTENSIONS})")
_SNAKE = re.compile(r"_?[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+_?")
_CAMEL = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+")
_PASCAL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z]+[a-z0-9]*)+")
_PLAIN_NAME = re.compile(r"[A-Za-z_]\w{2,}")
# A definition starts its line (after indentation and modifiers) and its name is followed
# by what code puts there ("(", "<", ":", "{", "=", "[", an end of line, or extends /
# implements): prose such as "the function converts a number" or "a type error" is not one.
_DEFINED = re.compile(
    r"^[ \t]*(?:(?:export|default|pub(?:\([\w:]+\))?|public|private|protected|static|abstract|"
    r"final|async|unsafe|data|sealed|open|internal)\s+)*"
    r"(?:def|class|function\*?|fn|func|struct|enum|trait|interface|type|module|impl)\s+"
    r"([A-Za-z_]\w*)(?=[ \t]*(?:[(<:{=\[]|$|extends\b|implements\b|struct\b|interface\b|for\b))",
    re.MULTILINE,
)
# Names every program uses: Python builtins and keywords, and methods of the standard
# types and modules that a model knows without being told.
_COMMON = frozenset(
    {*dir(builtins), *keyword.kwlist}
    | _words(
        "self cls args kwargs main test tests setup teardown init new get set put post "
        "delete update items keys values append extend insert remove pop clear copy sort "
        "reverse index count find rfind join split rsplit strip lstrip rstrip splitlines "
        "replace lower upper title capitalize startswith endswith format encode decode "
        "group groups groupdict match fullmatch search sub subn findall finditer compile "
        "escape read readline readlines write writelines close flush seek tell open load "
        "loads dump dumps exists mkdir makedirs listdir walk remove rename unlink isfile "
        "isdir basename dirname abspath realpath splitext getenv environ system popen run "
        "call check_output check_call communicate wait kill sleep time now today strftime "
        "strptime random randint choice shuffle sqrt floor ceil log exp pow deepcopy "
        "defaultdict namedtuple dataclass field partial wraps reduce chain product "
        "permutations combinations hexdigest digest sha256 md5 urlopen urlencode request "
        "json_normalize to_csv read_csv apply head tail shape astype reshape array zeros "
        "ones arange linspace mean std sum max min then catch resolve reject push shift "
        "unshift slice splice concat includes indexOf forEach map filter some every keys "
        "toString valueOf hasOwnProperty addEventListener querySelector getElementById "
        "console require exports module printf sprintf fprintf malloc free memcpy strlen "
        "strcmp strcpy exit assert assertEqual assertTrue assertFalse assertRaises "
        "fixture parametrize mark raises unwrap expect println push_str to_string as_str "
        "clone iter collect into len is_empty is_some is_none ok_or map_err and_then "
        "unwrap_or"
    )
)
_MAX_NAME_CHARS = 80


def _has_letter(text: str) -> bool:
    return any(c.isalpha() for c in text)


def _keep_path(candidate: str) -> bool:
    """Slash-separated words are a path when they end in a file extension, or are rooted
    (/, ./, ../, ~/) with two segments, or have three segments; ``n/a``, ``and/or``,
    ``Y/n``, ``it/s``, ``3/4`` and dates are not paths."""
    segments = [s for s in candidate.strip("/").split("/") if s not in ("", ".", "..", "~")]
    if not segments or not all(_has_letter(s) for s in segments):
        return False
    if _HAS_EXT.search(candidate):
        return True
    rooted = candidate.startswith(("/", "./", "../", "~/"))
    return len(segments) >= 3 or (rooted and len(segments) >= 2)


def _is_name(name: str) -> bool:
    return (
        3 <= len(name) <= _MAX_NAME_CHARS
        and name not in _COMMON
        and not (name.startswith("__") and name.endswith("__"))
        and not name.replace("_", "").isdigit()
        and _has_letter(name)
    )


@dataclass
class _Seen:
    kind: ArtifactKind
    value: str
    score: float = 0.0
    last: int = 0
    first: int = 0
    steps: set[int] = field(default_factory=set)


class Finder:
    """Collects what steps name, then ranks it (``ranked``)."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._position = 0

    def _add(self, kind: ArtifactKind, value: str, step: int, weight: float) -> None:
        if not value or len(value) > _MAX_VALUE_CHARS:
            return
        self._position += 1
        seen = self._seen.get(value)
        if seen is None:
            seen = self._seen[value] = _Seen(kind, value, first=self._position)
        elif KIND_ORDER.index(kind) < KIND_ORDER.index(seen.kind):
            seen.kind = kind  # the more specific reading wins (a test id over a file)
        if step not in seen.steps:
            seen.steps.add(step)
            seen.score += 1.0
        seen.score += weight
        seen.last = max(seen.last, step)

    def add_text(
        self,
        text: str,
        step: int,
        *,
        typed: bool = False,
        failing: bool = False,
        git: bool = False,
    ) -> None:
        """Collect what ``text`` (a part of step ``step``) names. ``typed``: the agent
        wrote it (a command, an edit, its reasoning); ``failing``: it is a failing line;
        ``git``: the step ran git (its output may list commits by hash)."""
        if not text:
            return
        if len(text) > _HEAD_CHARS + _TAIL_CHARS:  # read a long output at both ends
            text = text[:_HEAD_CHARS] + "\n" + text[-_TAIL_CHARS:]
        bonus = (2.0 if typed else 0.0) + (2.0 if failing else 0.0)
        rest = text
        # Cheap substring tests first: most texts hold no URL, hash, test id or ticket, and
        # a pattern not tried costs nothing.
        if "://" in rest or "git@" in rest:
            for pattern in (_URL, _SCP_GIT):
                for match in pattern.finditer(rest):
                    url = match.group(0).rstrip(_URL_TRAILING)
                    if url.endswith(")") and url.count("(") < url.count(")"):
                        url = url[:-1]
                    if not any(host in url for host in _BOILERPLATE_HOSTS):
                        self._add("url", url, step, bonus + 1.0)
                rest = pattern.sub(" ", rest)
        for index, pattern in enumerate(_COMMIT_FORMS):
            if (git if index == _ONELINE else _COMMIT_HINTS[index] in rest):
                for match in pattern.finditer(rest):
                    for value in match.groups():
                        if value and _has_letter(value) and any(c.isdigit() for c in value):
                            self._add("commit", value, step, bonus + 1.0)
        for index, pattern in enumerate(_TEST_FORMS):
            if not any(hint in rest for hint in _TEST_HINTS[index]):
                continue
            for match in pattern.finditer(rest):
                if index == len(_TEST_FORMS) - 1:  # unittest: name (module.Class[.name])
                    name, where = match.group(1), match.group(2)
                    value = where if where.endswith("." + name) else f"{where}.{name}"
                else:
                    value = match.group(1)
                line_end = rest.find("\n", match.end())
                line = rest[match.start() : line_end if line_end >= 0 else len(rest)]
                failed = "FAIL" in line or "ERROR" in line or "FAIL" in match.group(0)
                self._add("test", value, step, bonus + (2.0 if failed else 0.0))
        for match in _TICKET.finditer(rest):
            after_dash = rest[match.start() - 1 : match.start()] == "-"
            if match.group(1) not in _NOT_TICKETS and not after_dash:
                self._add("ticket", match.group(0), step, bonus + 1.0)
        if "#" in rest:
            for match in _HASH_TICKET.finditer(rest):
                value = next(g for g in match.groups() if g)
                self._add("ticket", value, step, bonus + 1.0)
        for match in _DEFINED.finditer(rest):
            name = match.group(1)
            if _is_name(name):
                self._add("identifier", name, step, bonus + 2.0)
        self._add_tokens(rest, step, bonus)

    def _add_tokens(self, text: str, step: int, bonus: float) -> None:
        """Files and identifiers, from one pass over the text's word-like tokens: a token
        with a slash is a path (if ``_keep_path``), one with a file extension a file name,
        else its parts may be names (snake_case, camelCase, PascalCase, or called)."""
        for token in _TOKEN.findall(text):
            called = token.endswith("(")
            word = token[:-1] if called else token
            if not called and word.isalpha() and (word.islower() or word.istitle()):
                continue  # a plain word: the common case, settled first
            if "/" in word:
                path = word.rstrip(".:,;-")
                if _keep_path(path):
                    path = path.removeprefix("./")
                    if len(path) > 2:
                        self._add("file", path.rstrip("/") or path, step, bonus)
                continue
            if "." in word and _FILE_TOKEN.fullmatch(word.rstrip(".")):
                self._add("file", word.rstrip("."), step, bonus)
                continue
            if word in _FILE_NAMES:
                self._add("file", word, step, bonus)
                continue
            parts = [word] if word.isidentifier() else word.translate(_SEPARATORS).split(".")
            for index, part in enumerate(parts):
                if len(part) < 3 or not _is_name(part):
                    continue
                if "_" in part:
                    shaped = _SNAKE.fullmatch(part) is not None
                elif part.islower() or part.isupper() or part.isdigit():
                    shaped = False
                else:
                    shaped = bool(_CAMEL.fullmatch(part) or _PASCAL.fullmatch(part))
                if shaped:
                    self._add("identifier", part, step, bonus)
                elif (
                    called
                    and index == len(parts) - 1
                    and part not in self._seen
                    and _PLAIN_NAME.fullmatch(part)
                ):
                    self._add("identifier", part, step, bonus - 0.5)

    def ranked(self) -> dict[ArtifactKind, list[str]]:
        """Each kind's values, best first: score, then the most recent, then the first
        seen. Names that a kept path or URL already spells out are left out."""
        by_kind: dict[ArtifactKind, list[_Seen]] = {k: [] for k in KIND_ORDER}
        for seen in self._seen.values():
            by_kind[seen.kind].append(seen)
        out: dict[ArtifactKind, list[str]] = {}
        for kind, items in by_kind.items():
            items.sort(key=lambda s: (-s.score, -s.last, s.first))
            out[kind] = [s.value for s in items]
        return out


def _quotas(available: dict[ArtifactKind, int], limit: int) -> dict[ArtifactKind, int]:
    """Slots per kind: each kind's share of ``limit``; what a kind cannot use goes to the
    kinds that still have candidates, in proportion to their shares."""
    quota = dict.fromkeys(KIND_ORDER, 0)
    left = limit
    wanting = [k for k in KIND_ORDER if available.get(k, 0) > 0]
    while left > 0 and wanting:
        total = sum(_SHARES[k] for k in wanting)
        given = 0
        for kind in wanting:
            share = max(int(left * _SHARES[kind] / total), 1)
            take = min(share, available[kind] - quota[kind], left - given)
            quota[kind] += take
            given += take
            if given >= left:
                break
        if given == 0:
            break
        left -= given
        wanting = [k for k in wanting if quota[k] < available[k]]
    return quota


def select(by_kind: dict[ArtifactKind, list[str]], limit: int) -> list[Artifact]:
    """At most ``limit`` artifacts, best first: each kind within its quota, the kinds
    interleaved so that the first of every kind comes before the tenth of any."""
    lists = {k: _dedupe(by_kind.get(k, [])) for k in KIND_ORDER}
    _drop_spelled_out(lists)
    quota = _quotas({k: len(v) for k, v in lists.items()}, limit)
    placed: list[tuple[float, int, Artifact]] = []
    for rank, kind in enumerate(KIND_ORDER):
        for i, value in enumerate(lists[kind][: quota[kind]]):
            placed.append((i / max(quota[kind], 1), rank, Artifact(kind=kind, value=value)))
    placed.sort(key=lambda t: (t[0], t[1]))
    return [a for _, _, a in placed]


def _dedupe(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        key = value.rstrip("/")
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def _drop_spelled_out(lists: dict[ArtifactKind, list[str]]) -> None:
    """Identifiers a listed path, URL or test id spells out as a whole word are not
    listed twice."""
    holders = [*lists["file"], *lists["url"], *lists["test"]]
    if not holders:
        return
    words = {w for h in holders for w in re.findall(r"[A-Za-z_]\w*", h)}
    lists["identifier"] = [n for n in lists["identifier"] if n not in words]


def merge_ranked(
    newer: Sequence[Artifact], older: Sequence[Artifact], exclude: Iterable[str], limit: int
) -> list[Artifact]:
    """``newer`` (best first) before ``older`` within each kind, without repeats or
    ``exclude``d values (what a model wrote), at most ``limit``, quotas as ``select``."""
    skip = set(exclude)
    by_kind: dict[ArtifactKind, list[str]] = {k: [] for k in KIND_ORDER}
    owner: dict[str, ArtifactKind] = {}
    for artifact in (*newer, *older):
        if artifact.value in skip or artifact.value in owner:
            continue
        owner[artifact.value] = artifact.kind
        by_kind[artifact.kind].append(artifact.value)
    return select(by_kind, limit)


def render_artifacts(
    artifacts: Sequence[Artifact], show: Callable[[str], str] = str
) -> list[str]:
    """Lines of a context: one per run of up to eight artifacts of a kind
    (``- files: a.py, b.py``), in the order of their best item; ``show`` makes a stored
    value safe to print."""
    chunks: list[tuple[ArtifactKind, list[str]]] = []
    open_chunk: dict[ArtifactKind, list[str]] = {}
    for artifact in artifacts:
        chunk = open_chunk.get(artifact.kind)
        if chunk is None or len(chunk) >= _CHUNK_ITEMS:
            chunk = []
            open_chunk[artifact.kind] = chunk
            chunks.append((artifact.kind, chunk))
        chunk.append(show(artifact.value))
    return [f"- {_LABELS[kind]}: {', '.join(values)}" for kind, values in chunks]
