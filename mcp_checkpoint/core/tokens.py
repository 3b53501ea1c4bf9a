"""Offline, dependency-free token counting that never undercounts OpenAI's ``o200k_base``.

The counter never downloads anything and uses only the standard library. A context packed
so that this count fits a budget must fit that budget under the real ``o200k_base``
tokenizer, hostile text included, so every rule errs high:

1. The text is pre-tokenized with a regular expression that mirrors o200k's own split
   pattern (words with an optional leading space or symbol, split at lower/upper-case
   boundaries; numbers in groups of up to three digits; punctuation runs; whitespace
   runs). The real tokenizer never merges across these pieces, so the count of a text is
   the sum of the counts of its pieces.
2. Characters that o200k's vocabulary barely merges are charged one by one, whatever
   piece they sit in: an ASCII control character (``\\v``, ``\\f``, ``\\x1c``-``\\x1f``,
   ``\\x00``...) costs 1; a non-ASCII character of the Basic Multilingual Plane costs what
   o200k spends on it alone (1 to 3; a table generated from the real encoding,
   ``_o200k_chars.py``); any other character (4-byte scripts, most emoji) costs 4, its
   UTF-8 length, since a byte-level BPE never spends more than a token per byte. The
   plain ASCII runs between such characters are charged as below.
3. Plain ASCII pieces (printable characters, tab, LF, CR):

   - numbers cost 1 per group of up to 3 digits (o200k holds every such group);
   - whitespace costs, per run of one character (or of CRLF pairs), what o200k spends on
     such a run alone at most: ``1 + (n-1)/k`` with k = 64 for spaces, 16 for tabs, 8 for
     LF, 4 for CRLF pairs, 2 for CR;
   - words and punctuation cost ``1 + a * sum(p) + offset``: ``p`` is a fitted
     probability that o200k puts a token boundary between two adjacent characters (an
     88x88 table over space, tab, CR, LF, letters and punctuation; rare pairs as in hashes
     and base64 have high ``p``), ``offset`` a fitted correction by piece kind and length;
     this estimate is scaled by a safety factor.

4. The piece costs are summed, a margin of 3 standard deviations of the word estimate's
   error is added (``3 * sqrt(n / 16)`` for ``n`` characters), and the sum is rounded up.

Rule 3's word estimate is the only statistical part; its error against the real
tokenizer, on real and adversarial text, is measured by ``bench tokens`` and documented in
``docs/token-counting.md``.
"""

from __future__ import annotations

import base64
import math
import re
import zlib
from functools import lru_cache

from mcp_checkpoint.core import _o200k_chars

__all__ = ["HeuristicTokenizer"]

# --- pre-tokenizer -------------------------------------------------------------------
# o200k's pattern uses \p{Lu}/\p{Ll}; the stdlib ``re`` has no Unicode categories, so
# ASCII letters keep their case split while non-ASCII letters belong to both classes.
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_PREFIX = r"(?:[^\r\n\w]|_)?"
_UPPER = r"[^\W\d_a-z]"
_LOWER = r"[^\W\d_A-Z]"
_PIECE_RE = re.compile(
    rf"{_PREFIX}{_UPPER}*{_LOWER}+{_CONTRACTION}"
    rf"|{_PREFIX}{_UPPER}+{_LOWER}*{_CONTRACTION}"
    r"|\d{1,3}"
    r"| ?(?:[^\s\w]|_)+[\r\n/]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)
# For plain ASCII text (printable, tab, LF, CR: see ``_pieces``) the same pattern with its
# classes spelled as ASCII ranges splits identically and runs about a third faster:
# _UPPER is [A-Z], _LOWER [a-z], _PREFIX and the punctuation class [^...A-Za-z0-9].
_PIECE_RE_ASCII = re.compile(
    rf"[^\r\nA-Za-z0-9]?[A-Z]*[a-z]+{_CONTRACTION}"
    rf"|[^\r\nA-Za-z0-9]?[A-Z]+[a-z]*{_CONTRACTION}"
    r"|[0-9]{1,3}"
    r"| ?[^\sA-Za-z0-9]+[\r\n/]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+",
    re.ASCII,
)

# Plain characters: printable ASCII, tab, LF, CR. Anything else is charged alone.
_PLAIN = "\t\n\r\x20-\x7e"
_ODD_RE = re.compile(f"[^{_PLAIN}]")
_RUNS_RE = re.compile(f"([{_PLAIN}]+)|(.)", re.DOTALL)
_WS_RUNS_RE = re.compile(r"(?:\r\n)+| +|\t+|\n+|\r+")

# --- cost model (tuned against o200k_base, see docs/token-counting.md) ---------------
_SCALE = 1.04  # global safety factor on the estimated word and punctuation costs
_PAIR_SCALE = 1.8  # weight of the summed pair boundary probabilities
_OFFSET_SCALE = 4.5  # weight of the per-(kind, length) residual offsets
_MAX_OFFSET_LEN = 16  # pieces longer than this use the last offset plus a per-char charge
_LONG_PIECE_CHARS = 32.0  # chars per extra token beyond _MAX_OFFSET_LEN
_TRAILING_NEWLINE_COST = 0.25  # per newline glued to a punctuation run (up to 2 of them)
_CACHE_SIZE = 1 << 16  # memoized piece costs
_BLOB_CHARS = 32  # truncate() may cut inside a piece longer than this
_ABOVE_BMP = 4  # a character beyond U+FFFF: 4 UTF-8 bytes, at most a token each
# Chars per extra token of a run of one whitespace character, beyond the first token:
# bounds of what o200k spends on such runs alone (CR pairs up at most two to a token).
_WS_RUN_CHARS = {" ": 64, "\t": 16, "\n": 8, "\r": 2}
_CRLF_RUN_PAIRS = 4
# The word estimate's error grows with the text: each character may add a variance of
# _VAR_PER_CHAR, and a text is charged _MARGIN_Z standard deviations of the sum on top of
# its estimate, so many pieces' errors average out where a lone random identifier still
# gets room for its worst case. (Charged on every character, estimated or not: an upper
# bound of the variance that keeps counting one pass over cached piece costs.)
_VAR_PER_CHAR = 0.0625
_MARGIN_Z = 3.0

# Probability that o200k puts a token boundary between two adjacent ASCII characters of a
# piece, fitted on local Python sources/docs plus random strings. Row-major _PAIR_N x
# _PAIR_N table, first character = row; each entry is a level k in _LEVELS standing for
# p = (k / 61) ** 2. Characters outside _PAIR_ALPHABET count as p = 1.
_LEVELS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LEVEL_MAX = 61 * 61
_PAIR_ALPHABET = (
    " \t\r\nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
)
_PAIR_N = 88
_PAIR_TABLE = (
    "PPPP00000011121001002000111111121221121321112121112123333023121021192221e201721138111113PP"
    "PPTgneudbjaPHmmuwwHalfCkEPPPPPPRPPPPLPPPHPPEPYPPPPRPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP1PP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPuPPPPPPPPPPPPPPPPPPPPPu020"
    "j70q840010x0x01070d101PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPUPPPPPPPPPPPPPPPPPPPPPPPPPPPPPdtznaJ"
    "PJl3Q4RIcFZduAfLRV7HPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPYPPPPPPPPPPPPPPPPPPPPPPPPPPPPPdydE5BU0"
    "op07oT9vK6G2gwKUbUPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPVPPPPPPPPPPPPPPPPPPPPPPPPPPPPPenD67CfTfw"
    "HmIJhuUgfrfKOtkuPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPWPPPPPPPPPPPPPPPPPPPPPPPPPPPPPhtd4g79pGYg4"
    "60Jjd025Amm63yPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPzPPPPPPPPPPPPPPPPPPPPPPPPPPPPPiHEvbazIhFsfFk"
    "5oHbwd9LSh5YPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPYPPPPPPPPPPPPPPPPPPPPPPPPPPPPPsrHV8Pp5gYZhAggQ"
    "Za7ehILYgnPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPWPPPPPPPPPPPPPPPPPPPPPPPPPPPPPeBTF7WMMhPWBrFcTSk"
    "C17VJIsLPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPVPPPPPPPPPPPPPPPPPPPPPPPPPPPPPh000300Jn3100040i100"
    "k0U2C0PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPWPPPPPPPPPPPPPPPPPPPPPPPPPPPPPytqIlIUSswwGNGgPJH1DaX"
    "XyIZPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPSPPPPPPPPPPPPPPPPPPPPPPPPPPPPPuOVKbQjRmGjMJmEVYPnPqTeY"
    "dKPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPYPPPPPPPPPPPPPPPPPPPPPPPPPPPPPfpM754sCfWy8WMdrYyccajvYcT"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPWPPPPPPPPPPPPPPPPPPPPPPPPPPPPPdaCp7SyKiVGhfmhmQUaAoSTHiYPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPVPPPPPPPPPPPPPPPPPPPPPPPPPPPPPdEd18l4AlCeqpebgZRd7inNc7VPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPkPPPPPPPPPPPPPPPPPPPPPPPPPPPPP9672l41ud60300d3b1470b0c4FPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPTPPPPPPPPPPPPPPPPPPPPPPPPPPPPPbIBi8VK5mYj8EPdbT794uDAqgVPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPWPPPPPPPPPPPPPPPPPPPPPPPPPPPPPDPRQPZZkQZZaNXXu6fKP1ZREEZPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPWPPPPPPPPPPPPPPPPPPPPPPPPPPPPPgwff4DbDjZ6vkb6FP7e8bfqJ4VPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPSPPPPPPPPPPPPPPPPPPPPPPPPPPPPPmAoM6stcjX8tlwikts63eEhSglPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPWPPPPPPPPPPPPPPPPPPPPPPPPPPPPPisgwarI3dVDsGNcgZ7dfdToh8EPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPpPPPPPPPPPPPPPPPPPPPPPPPPPPPPPc761563Khva202i5R011nbumh8PPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPwPPPPPPPPPPPPPPPPPPPPPPPPPPPPP8KBv5XAWaTOWOsqVVhuHEIPUzJPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPfqWJ7Tz98LBLQ9aAZkaDEL4NtZPPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPTPPPPPPPPPPPPPPPPPPPPPPPPPPPPPayfzpJZSlZZRjYFjZLIcRXZuaLPPPPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPUPPPPPPPPPPPPPPPPPPPPPPPPPPPPPJHsxuYBYiXHlf8f9Zv6fWSjUBwPPPPPPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPNPPPPPPPPPPPPPPPPPPPPPPPPPPPPP7KOB8OKQbZGXWDgYZGVmKZFImkPPPPPPPPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPU492ZjzvVOz9n3TbY233e8GxJvu86bDw1NxpG611T4W6f0l2l12xPPPP"
    "PPRPPPPPPPPPPPPPPPPPPPPPPPPPPPPPaoTtiYgtuRQaSIkFYkPMgYTJ4ZwusvuIBFGpQjGIzZOuBToIKNBWPPPPPP"
    "UPPPPPPPPPPPPPPPPPPPPPPPPPPPPPaQHGhXE1SYY4Fw6GY9JoiIYDHZuzjPjCHbFX9kDLrtTyw6KGKOGHPPPPPPRP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPPPgKAI9RZHhLYHUrcOZcmzlQxngsCaIk9bISBOtJAKuKuGuPLsUhDVPPPPPPWPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPPPPqUCaNzEKrKI587Yw42BDCdZ1NDHFoclpuWYZRxd4BzG1bfOAzakSPPPPPPSPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPPP5TJLhYTYeXRdEkjTYfMRcYLuFYlxqLwenNsZDyvknPZwvpmSSDwZPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPPPciVZhYYSoLYmZMoRY3IRaYPZKZzeMWdzMjOZSiAoMBZkytOlRMwZPPPPPPRPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPPPDNXLBXIZnZYOXY8KYEQCyCCTwgBKHHezVzQALGWUzxmHk2UyIISDPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPPPDRK2M3eTCHsk43sgGy23YFPcqzu371mc1Esyk64055Ak61M2W8Z2PPPPPPrPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPPPhYYXlYYQJYYAYwmYYY9YcZYYIZLUIPhHMZSwMNNSmIZH7GNwXZZZPPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPPPGCYBbYDsrYZFPklYYtSMBFzYRYTFWTpBMNSZvOVkPRZVMNVyUZBZPPPPPPWPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPPPmKMQbIAYbrYyuBcAYYoGhyZYCYsSECbTUWBZSeMShMZHCwxPRLtZPPPPPPRPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPPPPePvJbNnIllzPMEaRLyszlHCWgEqvsroPIGERQaGIGrkKlvCXsxkZPPPPPPUPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPPP8ASmmYzuFFKOtY3TYHwScOYQzDxQvnjucVJUhLzGxPZNvktNIBpAPPPPPPUPPPPPPPPPPPPPPPPPPPPPPP"
    "PPPPPPZ3tGY5HGfNsoy2P3Y3zg6enwCKzrq7TqdVzMl421rnY6xgkpaIKZPPPPPPRPPPPPPPPPPPPPPPPPPPPPPPPP"
    "PPPP7PKx8oTfBYL6PNfYY7QIE7NrpYzAzHrCJzhRKlyxkMWoB8uRQKuZPPPPPPUPPPPPPPPPPPPPPPPPPPPPPPPPPP"
    "PPTYCYWYNYzYYPYYHZYrIh9ZYYYYQOFOGZZZWZZiVzZDwqyE7AZZZZPPPPPPTPPPPPPPPPPPPPPPPPPPPPPPPPPPPP"
    "tJON4IMXjYYSCOkTKYTGrNDyIXAUrGdFvCATtxxieKTsojuCyO9ZPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPjL"
    "cK9XY8eHmEqlhlANH18RhYdPENCrbOsszWsGturyMIg1APxIEGPPPPPPRPPPPPPPPPPPPPPPPPPPPPPPPPPPPPjTFI"
    "6NZ1aYCulX9wX3zYoAhP7YoPFGmHY4IBvgBURqZkBfwIFEuqPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPHzRyYM"
    "LupYsvy7YaY83uYPLzAsBbHhgP2OjOm241X3Z2bezjRbHJPPPPPPTPPPPPPPPPPPPPPPPPPPPPPPPPPPPP6ZBY8XZZ"
    "9ZKSuYliYMSYLYYZQBrIxJkIHVBZHKuHJMZxFIINCKZZPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPbYXF6YZ17Y"
    "XZYYbIY7ASQYYSHYBRUEtBRjiZoYmqoPZfoxYScCRZPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPQYYJBYYZGYZY"
    "lZYWYYBIGYYZYYZQWSWXZYTZZAnSSIZABqZQZ4jDPPPPPPTPPPPPPPPPPPPPPPPPPPPPPPPPPPPPKYYYeYZYIYYYxr"
    "aYYKEZDXYYYYkZGTuZIZWZvTRrU8ZwnGXZIBgDPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPwYXMqYZvfwYZMP9Z"
    "YYZZgHxZZYGZZPhKqHqZZZTECZZKONUZEnThPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPgXVVUVVXWWXWUVTWVTZ"
    "XXXVVWUXWWUWXWTWWWUTVUWTVXTWUUWWVWekZYZZyvzxZwbLFMZU3ZxZPLOZZZZZZZPPP6NYGTXYTAWWAXYRXYXXOV"
    "YYXxXUUIXTJWQTVWHONsBVWXRyYYDWSWL7kukDHKcmt2ni63ggU9QRup8YoJjMpBPPPfJXYXXXrXVWWWUWWXWYTXWX"
    "KWUTXUXXYWUXWTVYWVUUXWXXXXXXWThW8qWZYZZYtJYYQcZZZZZZrZZZYZsZZZPPPqwwwDUGVWwOXGLDwGtOAOWLXA"
    "UUTVWVWWWWMVWWTUXVVVTWUPWWUUZSZsZZFuZZZCZUESZZZZZZZBZZqZ8ZZZPPPiWBryxVXYEUXUCtWXVVhXVWTxUT"
    "MwVAmXUYWXVTYVWWWWXWWTWWWVFIPZhZGtHZZqnmZZpYEZZzZxZLZZZZNZPPPyEXWRATNWGPWWGOtHtGNMWXrWTVGL"
    "JHJXLAHUUPDVKGWQRTWVrXWWYZhZZ9ZTJZZLZZZYZZBZZZZZZZOZZZZZPPP8wPYoEUMgGWWuBuPLGma3CJHvxDKVUm"
    "UYWwWXXSgTUWWYhiMXWWXWRzpFgOoL8Bn0tbialpHyDHIb8tjYfLqPPPP2i77bk8bldak855ebcd3fm6g388n9AlAb"
    "cjvaHB6bNB2skgD8RbmUi2u5q94b4aKZ6IyqNwZWHhdEZt6LczZrPPP2JCEHGYXVOXVYOHDrVXwGXGWGvVVTVVVUVV"
    "TWWrTXWVWWXVUKWVXTNGKxDwLu6er1e5732NuPLZnCnCWLKCtZPPP7phvFZDOjCilQElZfluHBDuC35cfZBZYVPYZW"
    "rYFiYYVZyyVYWZYWxVZNZyWGy2ZnNKpZZVkEWEVHZZLZZZZZPPPhJxPFZYYnPijKnyZOZvQJYYsgoZTCJQYYYYZYYZ"
    "YYZYYYZZYYYYYYZMBHZZECUZ4OQTwKYX7ZZZVpAZZZZZZZPPP1JrwGQIlCA9rODpJPnNIuvpOgheMjIJDRBrWAEvyE"
    "PDxGLOxUMDAtOvNoJBwnLJCy7HQHZUZZZHvzZQEZoZZZPPPuwcm5nbhnjbDfcbmmFibgnkaem5HxCnNDfmGpiaayFv"
    "JHFHOqGkQcZNZDbPLqTGWq9HRZXYk1ZZK5ZZVZnSYZPPP1e2349634b2574mnji328ja33d34574a474oqd653qfi8"
    "45fhcdk7RkJeAJEFsowas06RwfJZAKj9XG8QpyZPPPPdydUgturAw9qit3G9nmenrvg9jdsAOIGBzIyGoMsMFSEMxv"
    "BmFelvZIuzqLudN6FXGz0DZuyjvRNOWPIZzZZCPPP1XMYRROCuUBdXTzTVNNOUXCFBIFNJQQJuEyJPWRWHAYTVNGUV"
    "WLHVZrBMnzEAMuwdkH74YEeZTABAFPr4nZZYPPP7pDDWAXWVAAHBDLAwDGzAWTUrEUWVUXWVPWWWWWVVXUXUTWUTWW"
    "VWZLZzvjTUTZDCvODZpmZZXZZpYZZZZZPZPPPLgvCUYLWIDWVXJFXIXXHnGJLAWXNOtnHAAGLArVwDGDGwArAqGCWV"
    "kZJtZsVFZZZZvZ3XZ3fu6ZPYZZNZRZZZPPPUTEzIWEKILyPKGqVVCIwMLCKevyYHQVYcVVZXYQVbXZYVT7JWSiWWI5"
    "O8txaoZJZZ4MyGZnd3MsavZZgM3ZUZPPP6DHWwWXXXWTPVWUXVXWNTWXqBWWJTOATWUVIWLHOAWMVUDUWWWGXDZwEt"
    "pmgiDBZnJElxI3b2OCWsXZZecHBZPPPaPWUWUXUPKWHTWQTGrDGrWnLVVXXVVVWWWWXVUUTTUXUVWWTWXWXV9CrDZZ"
    "LOwZZkKpOuZTZblZFlZZMZZJZZPPPPYYYQlXyVWVWXSYWzVYYWYWXYrUVWXUWWXVVVWVWXXWWXWVVTWYXXZwZxZZZV"
    "ZYZZZZZSZZZZZnKJZZZZUZZZPPP5CHNQVIKCgbgDynUMFQgABjTbHDzUUVYUNYVQkJRLXWYTSPYeXtKPZ8ZaxT5tZU"
    "WtfzIbZZZZZsbF4AoYDZYZPPP6rIVrEkVWTUXXW9WWWtcqpxY7UUWWXWJVVWUUVTRXWxWXLUZWZTXUZeZWZZKWZZZL"
    "vW7SZZZZZZZbZZZZZZZZPPP5TXUWVVWXVVXVVXWXWWWVWXVPWVUVVVTUWXVUVWUWWWWUUUVWTUXVvxZZGwD5eBf3h8"
    "ng9DcPRZalkGEZCLEZPPPFPWVWXUVWYYYUXYUWUXXWUXXYYWWWVWXXUWVWWWYXUWXWVYWVTVTWZZZZZZZKXZZZJTZZ"
    "ZZRZZZgoZxZZjZZZPPPll45177ced68831a4pd38i874eoq5d9hjbjnCd434d9h8786abkAhZJZEwZRfpAZ9zpuOAG"
    "FZZZozXF0Z5jZZPPPaYWWWYWXWWVVWVXWXWXCKXTWVXXVWUWUWWXUUTVXWVWWUVUVTWTXVZXZSTZAWSZZ6ZyPPEYZZ"
    "ZZYXbZXhHZOZPPP3XYYXYWWYHTFYYXMXVWQXUXUqTWVUXWXXTWVXXXWXXWWWWWUVVWVWFaZkuZmHZZZZsZPRZYZZZd"
    "YpZZUYqOhZPPPbYYZYYZMYYXXYYXYZRYYZYYYXWXZYZZZYXYYVVYZYYYXYZZYYXWVXZKZZZZXVZZZZAXZZZZzZZZZz"
    "ZZZZZ6ZZPPP2WWUPXUXVXWWWTXPVUXnWWVUTXYVVWXWUVWWVUWWTWWTUUXWWUWUWNpZyHxuMlZQ3CxcKrrSHCGBnLW"
    "vvwDsZPPPvWVVVVTWWXVUWVUWTXUXUWVWUUVVTWVWXVVWWWWWWXUVWTXWVUVVUZZZZZZZPZZZNrZCZZZyZZZZZZZZZ"
    "ZZZo"
)
# Mean residual (real - expected) token count of natural pieces by kind (0: bare letters,
# 1: space + letters, 2: symbol + letters, 3: punctuation run) and length (capped at 16).
# fmt: off
_LENGTH_OFFSETS = (
    (0.00, 0.00, -0.12, -0.04, -0.04, -0.02, -0.04, 0.02, 0.09,
     0.16, 0.26, 0.26, 0.36, 0.46, 0.56, 0.66, 0.76),
    (0.00, 0.00, 0.00, -0.03, -0.03, -0.04, -0.05, -0.09, -0.09,
     -0.07, -0.05, -0.02, 0.02, 0.04, 0.14, 0.14, 0.24),
    (0.00, 0.00, -0.06, 0.04, 0.05, 0.01, 0.04, 0.04, 0.14,
     0.24, 0.34, 0.44, 0.54, 0.64, 0.74, 0.84, 0.94),
    (0.00, 0.00, -0.01, -0.02, 0.01, 0.07, 0.38, 0.62, 0.72,
     0.72, 0.74, 0.84, 0.84, 0.84, 0.84, 0.94, 0.94),
)
# fmt: on


def _ascii_cost(piece: str) -> float:
    """Estimated cost of a plain word or punctuation piece, from pair boundary probabilities.

    Each adjacent character pair inside the piece has a learned probability that the
    real tokenizer puts a token boundary between the two characters; the expected
    token count is one plus their sum. Pieces whose pairs are mostly rare (random
    letters, hashes, base64) get an extra charge, since BPE merges less there.

    Args:
        piece: A plain ASCII piece that is neither whitespace-only nor a number.

    Returns:
        The estimated number of tokens (fractional, unscaled).
    """
    find = _PAIR_ALPHABET.find
    total = 0
    prev = find(piece[0])
    for ch in piece[1:]:
        cur = find(ch)
        if prev < 0 or cur < 0:
            total += _LEVEL_MAX  # a character outside the table
        else:
            level = _LEVELS.find(_PAIR_TABLE[prev * _PAIR_N + cur])
            total += level * level
        prev = cur
    n = len(piece)
    expected = total / _LEVEL_MAX
    if piece[-1].isalpha():
        first = piece[0]
        kind = 0 if first.isalpha() else 1 if first == " " else 2
    else:
        kind = 3
    offset = _OFFSET_SCALE * _LENGTH_OFFSETS[kind][min(n, _MAX_OFFSET_LEN)]
    if n > _MAX_OFFSET_LEN:
        offset += (n - _MAX_OFFSET_LEN) / _LONG_PIECE_CHARS
    return max(1.0, 1.0 + _PAIR_SCALE * expected + offset)


def _whitespace_cost(piece: str) -> float:
    """Cost of a plain whitespace piece: the sum of its runs' bounds (see module doc).

    Args:
        piece: Tabs, LFs, CRs and spaces.

    Returns:
        An upper bound of its o200k tokens.
    """
    total = 0.0
    for match in _WS_RUNS_RE.finditer(piece):
        run = match.group()
        if run[0] == "\r" and len(run) > 1 and run[1] == "\n":
            total += 1.0 + (len(run) // 2 - 1) / _CRLF_RUN_PAIRS
        else:
            total += 1.0 + (len(run) - 1) / _WS_RUN_CHARS[run[0]]
    return total


@lru_cache(maxsize=1)
def _bmp_costs() -> bytes:
    """The o200k cost of each BMP character from U+0080, alone (decoded on first use)."""
    return zlib.decompress(base64.b85decode(_o200k_chars.BMP_COSTS_B85))


def _char_cost(ch: str) -> int:
    """Cost of one character charged alone (an ASCII control or a non-ASCII character)."""
    cp = ord(ch)
    if cp < _o200k_chars.FIRST:
        return 1
    if cp <= _o200k_chars.LAST:
        return _bmp_costs()[cp - _o200k_chars.FIRST]
    return _ABOVE_BMP


def _plain_cost(piece: str) -> float:
    """Cost of a plain ASCII piece (word and punctuation estimates scaled)."""
    if piece[-1].isdigit():
        return 1.0
    if piece.isspace():
        return _whitespace_cost(piece)
    core = piece.rstrip("\r\n")
    if core is not piece and core:
        # Newlines after punctuation ("):\n", "```\n\n") mostly merge into its last token;
        # more than two are charged as the whitespace run they are.
        trailing = piece[len(core) :]
        extra = (
            _TRAILING_NEWLINE_COST * len(trailing)
            if len(trailing) <= 2
            else _whitespace_cost(trailing)
        )
        return _SCALE * (_ascii_cost(core) + extra)
    return _SCALE * _ascii_cost(piece)


def _mixed_cost(piece: str) -> float:
    """Cost of a piece holding characters charged alone between plain ASCII runs."""
    total = 0.0
    for match in _RUNS_RE.finditer(piece):
        run = match.group(1)
        if run is None:
            total += _char_cost(match.group(2))
        else:
            total += sum(map(_plain_cost, _PIECE_RE_ASCII.findall(run)))
    return total


def _pieces(text: str) -> list[str]:
    """The pre-tokenizer pieces of ``text``."""
    if text.isascii() and _ODD_RE.search(text) is None:
        return _PIECE_RE_ASCII.findall(text)
    return _PIECE_RE.findall(text)


@lru_cache(maxsize=_CACHE_SIZE)
def _piece_cost(piece: str) -> float:
    """Cost of one pre-tokenized piece (fractional, at least 1).

    Args:
        piece: A piece produced by the pre-tokenizer regex.

    Returns:
        Its cost; a text counts the sum of its pieces' costs plus the margin of its
        length, rounded up.
    """
    if _ODD_RE.search(piece) is not None:
        return _mixed_cost(piece)
    return _plain_cost(piece)


class HeuristicTokenizer:
    """Offline ``o200k_base`` token counter that errs high, never low (stdlib only).

    Attributes:
        name: Identifier of the counting rules, e.g. for logging alongside counts.
    """

    name: str = "heuristic-o200k-v2"

    def count(self, text: str) -> int:
        """Count ``text`` in o200k_base tokens, never below the real count.

        Args:
            text: Any string.

        Returns:
            The count; 0 for the empty string.
        """
        if not text:
            return 0
        return _ceil(sum(map(_piece_cost, _pieces(text))), len(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """Return the longest prefix of ``text`` whose ``count`` is at most ``max_tokens``.

        The cut falls between pre-tokenizer pieces (word, number, punctuation or
        whitespace boundaries). A single piece longer than 32 characters (a hash, a
        base64 blob, a long run of symbols) may be cut inside so that it is not dropped
        whole. Trailing whitespace of the prefix is kept as-is.

        Args:
            text: The text to truncate.
            max_tokens: The token budget; values below 1 give an empty string.

        Returns:
            A prefix ``p`` of ``text`` with ``self.count(p) <= max_tokens``.
        """
        if max_tokens <= 0 or not text:
            return ""
        # One pass over the pieces: a text that fits is returned without a separate count
        # (the running sum is the very sum ``count`` takes, in the same order).
        total = 0.0
        end = 0
        next_piece = ""
        for match in _PIECE_RE.finditer(text):
            cost = _piece_cost(match.group())
            if _ceil(total + cost, match.end()) > max_tokens:
                next_piece = match.group()
                break
            total += cost
            end = match.end()
        else:
            return text
        prefix = text[:end]
        # Try to take part of an oversized next piece (long blobs are not words).
        if len(next_piece) > _BLOB_CHARS:
            lo, hi = 0, len(next_piece)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.count(prefix + next_piece[:mid]) <= max_tokens:
                    lo = mid
                else:
                    hi = mid - 1
            prefix += next_piece[:lo]
        # Re-splitting a prefix can differ slightly from the pieces of the whole text;
        # back off piece by piece until the prefix fits under its own count.
        while prefix and self.count(prefix) > max_tokens:
            pieces = _PIECE_RE.findall(prefix)
            prefix = prefix[: len(prefix) - len(pieces[-1])]
        return prefix


def _ceil(total: float, length: int) -> int:
    """The count of a text of ``length`` characters whose pieces cost ``total``: plus the
    margin, rounded up (whole-token sums stay exact despite float addition)."""
    return math.ceil(round(total + _MARGIN_Z * math.sqrt(_VAR_PER_CHAR * length), 9))
