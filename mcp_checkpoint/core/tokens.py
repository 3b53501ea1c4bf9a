"""Offline, dependency-free token counting that approximates OpenAI's ``o200k_base``.

The counter never downloads anything and uses only the standard library. It is a
heuristic, deliberately biased to *overcount*: a context packed so that its heuristic
count fits a budget should also fit that budget under the real ``o200k_base`` tokenizer.

How it works:

1. The text is pre-tokenized with a regular expression that mirrors o200k's own split
   pattern (words with an optional leading space or symbol, split at lower/upper-case
   boundaries; numbers in groups of up to three digits; punctuation runs; whitespace
   runs). The real tokenizer never merges across these pieces, so the count of a text
   is the sum of the counts of its pieces.
2. Each ASCII word or punctuation piece costs ``1 + a * sum(p) + offset``: ``p`` is a
   fitted probability that o200k puts a token boundary between two adjacent characters
   (an 88x88 table over space, tab, CR, LF, letters and punctuation; rare pairs such
   as those in hashes and base64 have high ``p``), and ``offset`` is a fitted correction
   by piece kind and length (long identifiers split more than the pair sum predicts).
   Numbers cost 1 per group of up to 3 digits; whitespace runs are cheap unless they mix
   characters; non-ASCII characters are charged by UTF-8 length, near the worst case of
   one token per byte, because natural text and random symbols cannot be told apart
   without the vocabulary.
3. The piece costs are summed, scaled by a small safety factor and rounded up.

Measured against the real tokenizer (notes/tokens.md): English prose, agent traces and
code are overcounted by about 14-18% in total, with under 0.5% of texts undercounted
(by 1 token); natural non-Latin text is overcounted 2-4x.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

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

# --- cost model (tuned against o200k_base, see notes/tokens.md) ------------------------
_SCALE = 1.04  # global safety factor on the summed piece costs
_PAIR_SCALE = 1.8  # weight of the summed pair boundary probabilities
_OFFSET_SCALE = 4.5  # weight of the per-(kind, length) residual offsets
_MAX_OFFSET_LEN = 16  # pieces longer than this use the last offset plus a per-char charge
_LONG_PIECE_CHARS = 32.0  # chars per extra token beyond _MAX_OFFSET_LEN
_TRAILING_NEWLINE_COST = 0.25  # per newline glued to a punctuation run
_WS_CHANGE_COST = 0.6  # extra cost per change of character inside a whitespace run
_NON_ASCII_BYTE = 0.85  # cost per UTF-8 byte of a non-ASCII character
_CACHE_SIZE = 1 << 16  # memoized piece costs
_SHORT_WHITESPACE = 2  # whitespace runs up to this length are one token
_BLOB_CHARS = 32  # truncate() may cut inside a piece longer than this

# Probability that o200k puts a token boundary between two adjacent ASCII characters of a
# piece, fitted on local Python sources/docs plus random strings (tokwork/fit_bigrams.py).
# Row-major _PAIR_N x _PAIR_N table, first character = row; each entry is a level k in
# _LEVELS standing for p = (k / 61) ** 2. Characters outside _PAIR_ALPHABET count as p = 1.
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
    """Cost of an ASCII word or punctuation piece from pair boundary probabilities.

    Each adjacent character pair inside the piece has a learned probability that the
    real tokenizer puts a token boundary between the two characters; the expected
    token count is one plus their sum. Pieces whose pairs are mostly rare (random
    letters, hashes, base64) get an extra charge, since BPE merges less there.

    Args:
        piece: An ASCII piece that is neither whitespace-only nor a number.

    Returns:
        The estimated number of tokens (fractional).
    """
    find = _PAIR_ALPHABET.find
    total = 0
    prev = find(piece[0])
    for ch in piece[1:]:
        cur = find(ch)
        if prev < 0 or cur < 0:
            total += _LEVEL_MAX  # newline or other character outside the table
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
    """Cost of a whitespace-only piece.

    Runs of one character (spaces, newlines, tabs) merge into long tokens; each change
    of character (as in CR LF pairs or mixed tabs and newlines) tends to start a new one.

    Args:
        piece: A run of whitespace characters.

    Returns:
        The estimated number of tokens.
    """
    n = len(piece)
    if n <= _SHORT_WHITESPACE:
        return 1.0
    first = piece[0]
    if piece.count(first) == n:
        return 1.0 + n / (64.0 if first == " " else 16.0)
    changes = sum(1 for i in range(1, n) if piece[i] != piece[i - 1])
    return 1.0 + _WS_CHANGE_COST * changes + n / 16.0


def _non_ascii_cost(piece: str) -> float:
    """Cost of a piece containing non-ASCII characters, charged by UTF-8 length.

    Args:
        piece: The piece.

    Returns:
        The estimated number of tokens.
    """
    n_ascii = sum(1 for ch in piece if ch < "\x80")
    extra_bytes = len(piece.encode("utf-8", "surrogatepass")) - len(piece)
    n_non_ascii = len(piece) - n_ascii
    return 1.0 + n_ascii / 3.0 + (n_non_ascii + extra_bytes) * _NON_ASCII_BYTE


# For ASCII text the ASCII-mode pattern splits identically and runs faster; the only ASCII
# characters the two modes class differently are \x1c-\x1f (Unicode whitespace only).
_PIECE_RE_ASCII = re.compile(_PIECE_RE.pattern, re.ASCII)
_UNICODE_ONLY_SPACE = re.compile("[\x1c-\x1f]")


def _pieces(text: str) -> list[str]:
    """The pre-tokenizer pieces of ``text``."""
    if text.isascii() and _UNICODE_ONLY_SPACE.search(text) is None:
        return _PIECE_RE_ASCII.findall(text)
    return _PIECE_RE.findall(text)


@lru_cache(maxsize=_CACHE_SIZE)
def _piece_cost(piece: str) -> float:
    """Estimated token cost of one pre-tokenized piece.

    Args:
        piece: A piece produced by the pre-tokenizer regex.

    Returns:
        The estimated number of tokens (fractional, at least 1).
    """
    if not piece.isascii():
        return _non_ascii_cost(piece)
    if piece[-1].isdigit():
        return 1.0
    if piece.isspace():
        return _whitespace_cost(piece)
    core = piece.rstrip("\r\n")
    if core is not piece and core:
        # Newlines after punctuation ("):\n", "```\n\n") mostly merge into its last token.
        newlines = len(piece) - len(core)
        return _ascii_cost(core) + _TRAILING_NEWLINE_COST * newlines
    return _ascii_cost(piece)


class HeuristicTokenizer:
    """Approximate, overcounting ``o200k_base`` token counter (stdlib only, offline).

    Attributes:
        name: Identifier of the heuristic and its tuning, e.g. for logging alongside counts.
    """

    name: str = "heuristic-o200k-v1"

    def count(self, text: str) -> int:
        """Estimate the number of o200k_base tokens in ``text``, erring on the high side.

        Args:
            text: Any string.

        Returns:
            The estimated token count; 0 for the empty string.
        """
        if not text:
            return 0
        total = sum(map(_piece_cost, _pieces(text)))
        return math.ceil(total * _SCALE)

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
        budget = max_tokens / _SCALE
        total = 0.0
        end = 0
        next_piece = ""
        for match in _PIECE_RE.finditer(text):
            cost = _piece_cost(match.group())
            if total + cost > budget:
                next_piece = match.group()
                break
            total += cost
            end = match.end()
        else:
            if math.ceil(total * _SCALE) <= max_tokens:
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
