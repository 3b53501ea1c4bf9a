"""The LoCoMo data ``bench locomo`` reads (conversations, their turns and questions, with the
evidence turns each question has), and how a ranking is scored against a question's
evidence (turn recall@k, session recall@5, MRR, NDCG@10).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._client import BenchError
from bench._stats import percentile

__all__ = ["CATEGORIES", "Conversation", "Question", "Scored", "Turn", "load_locomo", "score"]

CATEGORIES = (1, 2, 3, 4)
QUICK_QUESTIONS = 40
_SESSION = re.compile(r"D(\d+):\d+")


@dataclass(frozen=True)
class Turn:
    """One conversation turn: the memory the benchmark commits for it."""

    dia_id: str
    speaker: str
    text: str

    @property
    def content(self) -> str:
        """The memory's text: who said what."""
        return f"{self.speaker}: {self.text}"


@dataclass(frozen=True)
class Question:
    """A retrieval question and the turns that answer it (scoring only)."""

    text: str
    category: int
    evidence: frozenset[str]


@dataclass(frozen=True)
class Conversation:
    """A LoCoMo sample: its turns in order and its questions of categories 1-4."""

    sample_id: str
    turns: list[Turn]
    questions: list[Question]

    @property
    def scope(self) -> str:
        """The memory scope of this conversation."""
        return f"conv:{self.sample_id}"


def session_of(dia_id: str) -> int | None:
    """The session number of a turn id ("D3:7" -> 3); None when malformed."""
    match = _SESSION.fullmatch(dia_id)
    return int(match.group(1)) if match else None


def _sessions(conversation: dict[str, Any]) -> list[str]:
    keys = [k for k in conversation if re.fullmatch(r"session_\d+", k)]
    return sorted(keys, key=lambda k: int(k.split("_")[1]))


def load_locomo(path: Path) -> list[Conversation]:
    """The conversations of a LoCoMo JSON file. A question is kept when its category is 1-4
    and its evidence names at least one turn of its conversation (malformed ids inside an
    evidence list are ignored, not repaired). BenchError when the file is not LoCoMo."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, list) or not doc:
        raise BenchError(f"{path} is not a LoCoMo file (a JSON list of samples)")
    found: list[Conversation] = []
    for index, sample in enumerate(doc):
        try:
            conversation = sample["conversation"]
            sample_id = str(sample.get("sample_id") or f"sample-{index}")
            turns = [
                Turn(str(t["dia_id"]), str(t["speaker"]), str(t["text"]))
                for key in _sessions(conversation)
                for t in conversation[key]
            ]
            known = {t.dia_id for t in turns}
            questions = []
            for qa in sample["qa"]:
                category = int(qa["category"])
                evidence = frozenset(e for e in qa.get("evidence") or [] if e in known)
                if category in CATEGORIES and evidence:
                    questions.append(Question(str(qa["question"]), category, evidence))
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"{path}: sample {index} is not a LoCoMo sample ({exc!r})") from exc
        if not turns:
            raise BenchError(f"{path}: sample {sample_id} has no turns")
        if len(known) != len(turns):
            raise BenchError(f"{path}: sample {sample_id} repeats a dia_id")
        found.append(Conversation(sample_id, turns, questions))
    return found


def _quick(conversations: Sequence[Conversation]) -> list[Conversation]:
    """The first conversation with QUICK_QUESTIONS of its questions, taken from each
    category in turn (in file order) so that every category is exercised."""
    first = conversations[0]
    queues = [
        [i for i, q in enumerate(first.questions) if q.category == c] for c in CATEGORIES
    ]
    chosen: list[int] = []
    while len(chosen) < QUICK_QUESTIONS and any(queues):
        for queue in queues:
            if queue and len(chosen) < QUICK_QUESTIONS:
                chosen.append(queue.pop(0))
    questions = [first.questions[i] for i in sorted(chosen)]
    return [Conversation(first.sample_id, first.turns, questions)]


# -- metrics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One question's retrieval figures."""

    category: int
    recall5: float
    recall10: float
    session5: float
    ndcg10: float


def score(ranked: Sequence[str | None], question: Question) -> Scored:
    """The figures of one ranked list of turn ids (None: a hit that is no turn of this
    conversation, never relevant) against the question's evidence turns."""
    evidence = question.evidence
    top5, top10 = set(ranked[:5]), set(ranked[:10])
    sessions = {session_of(e) for e in evidence}
    hit_sessions = {session_of(d) for d in ranked[:5] if d is not None}
    dcg = sum(1 / math.log2(rank + 2) for rank, d in enumerate(ranked[:10]) if d in evidence)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(evidence), 10)))
    return Scored(
        category=question.category,
        recall5=len(evidence & top5) / len(evidence),
        recall10=len(evidence & top10) / len(evidence),
        session5=len(sessions & hit_sessions) / len(sessions),
        ndcg10=dcg / ideal,
    )


def _figures(rows: Sequence[Scored]) -> dict[str, Any]:
    if not rows:
        return {"questions": 0, "turn_recall@5": None, "turn_recall@10": None,
                "session_recall@5": None, "ndcg@10": None}

    def mean(name: str) -> float:
        total: float = sum(getattr(r, name) for r in rows)
        return round(total / len(rows), 4)

    return {
        "questions": len(rows),
        "turn_recall@5": mean("recall5"),
        "turn_recall@10": mean("recall10"),
        "session_recall@5": mean("session5"),
        "ndcg@10": mean("ndcg10"),
    }


def _latency(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "mean": round(sum(values) / len(values), 3),
        "max": round(max(values), 3),
    }
