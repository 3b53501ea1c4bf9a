"""The shipped counter against the real o200k_base (bpe-openai, offline): never below it.

Hypothesis draws hostile and ordinary text from each class the counter must bound:
control and format characters, whitespace mixes, emoji, CJK, 4-byte scripts, base64,
long identifiers, and everything mixed. Derandomized, so CI runs the same examples.
"""

from __future__ import annotations

import base64
import string
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_checkpoint.core import _o200k_chars
from mcp_checkpoint.core.tokens import HeuristicTokenizer

bpe_openai = pytest.importorskip("bpe_openai")  # the dev extra installs it; CI runs this
ENC = bpe_openai.get_encoding("o200k_base")
TOK = HeuristicTokenizer()


def real(text: str) -> int:
    return len(ENC.encode_ordinary(text))


PROPERTY = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

_ODD_WHITESPACE = (
    "\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CONTROL = st.characters(categories=["Cc", "Cf"])
_NO_SURROGATES = st.characters(exclude_categories=["Cs"])


def _mix(*alphabets: st.SearchStrategy[str], max_size: int = 300) -> st.SearchStrategy[str]:
    return st.text(alphabet=st.one_of(*alphabets), max_size=max_size)


CLASSES = {
    "control": _mix(_CONTROL, st.sampled_from("ab \n")),
    "whitespace": _mix(st.sampled_from(" \t\n\r" + _ODD_WHITESPACE), st.sampled_from("xy.")),
    "emoji": _mix(
        st.characters(min_codepoint=0x1F000, max_codepoint=0x1FAFF),
        st.sampled_from("\u200d\ufe0f "),
    ),
    "cjk": _mix(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
        st.sampled_from("。，、 a1"),
    ),
    "four_byte": _mix(
        st.characters(min_codepoint=0x10000, max_codepoint=0x3FFFF),
        st.sampled_from(" x"),
    ),
    "base64": st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()),
    "identifiers": st.lists(
        st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,12}", fullmatch=True), min_size=1, max_size=12
    ).flatmap(
        lambda parts: st.sampled_from(["_", "", ".", "::"]).map(lambda sep: sep.join(parts))
    ),
    "ascii": st.text(alphabet=string.printable, max_size=400),
    "mixed": st.text(alphabet=_NO_SURROGATES, max_size=300),
}


@pytest.mark.parametrize("kind", list(CLASSES), ids=list(CLASSES))
def test_count_is_never_below_o200k(kind: str) -> None:
    @PROPERTY
    @given(text=CLASSES[kind])
    def check(text: str) -> None:
        assert TOK.count(text) >= real(text), repr(text)

    check()


@PROPERTY
@given(
    parts=st.lists(st.one_of(*CLASSES.values()), min_size=1, max_size=6),
    limit=st.integers(min_value=0, max_value=300),
)
def test_truncated_text_fits_its_limit_under_o200k(parts: list[str], limit: int) -> None:
    cut = TOK.truncate("\n".join(parts), limit)
    assert real(cut) <= TOK.count(cut) <= limit


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("p" + "\x0c" * 7999, id="form-feeds"),
        pytest.param("data" + "\f" * 20000, id="data-form-feeds"),
        pytest.param("\x0b\x1c\x1d\x1e\x1f" * 1000, id="separators"),
        pytest.param("\r" * 5000, id="carriage-returns"),
        pytest.param("\u2028\u00a0\u202f" * 1000, id="unicode-spaces"),
        pytest.param("".join(chr(0x20000 + i * 7) for i in range(2000)), id="cjk-ext-b"),
        pytest.param("\U0001f469\u200d\U0001f4bb" * 500, id="emoji-zwj"),
    ],
)
def test_floods_of_hostile_characters_are_charged_in_full(text: str) -> None:
    assert TOK.count(text) >= real(text)


def test_count_stays_close_to_o200k_on_english_and_code() -> None:
    text = (
        "def rehydrate(self, run_id: str, budget: int) -> Context:\n"
        '    """A fresh context for the run, never over the budget."""\n'
        "    return self._pack(run_id, budget)\n\n"
        "The agent opened tests/test_core.py, ran pytest and saw one failure in "
        "test_final_boss; it then fixed the off-by-one error in core/budget.py.\n"
    ) * 20
    assert real(text) <= TOK.count(text) <= 1.3 * real(text)


def test_the_character_table_matches_o200k() -> None:
    """Regenerates ``_o200k_chars.BMP_COSTS_B85`` from the real encoding; on a mismatch,
    print ``_table_b85()`` and paste it into the module."""
    assert zlib.decompress(base64.b85decode(_o200k_chars.BMP_COSTS_B85)) == _table()


def _table() -> bytes:
    out = bytearray()
    for cp in range(_o200k_chars.FIRST, _o200k_chars.LAST + 1):
        out.append(3 if 0xD800 <= cp < 0xE000 else real(chr(cp)))
    return bytes(out)


def _table_b85() -> str:
    return base64.b85encode(zlib.compress(_table(), 9)).decode()
