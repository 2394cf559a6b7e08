"""What hostile Unicode costs one event's text, against the costliest plain text of the same cap.

    python -m benchmarks.hostile_text --tokenizer PATH [--max-chars 8192]

For texts of ``--max-chars`` characters (what training writes for the default 128 tokens x 2
windows), plain and hostile: the lexical transform's n-grams and milliseconds (both feature
families, with the cap after normalising and, for comparison, without it), and the
tokenizer's tokens and milliseconds (head truncation as served). Times are the fastest of
``--rounds``, the texts taken in turn each round. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from handlers.lexical import FAMILIES
from handlers.text import TextFormat
from handlers.tfidf import TermVectorizer

TEXTS = {
    "plain: one long word": "a",
    "plain: hyphenated two-letter words": "ab-",
    "plain: punctuation": "!",
    "plain: CJK": "\u4e00",
    "U+FDFA": "\ufdfa",
    "U+3300": "\u3300",
    "U+FB03": "\ufb03",
    "combining-mark flood": "a" + "\u0301" * 40,
    "RTL override, zero-width": "\u202e\u200b\u200d\u2067ab",
    "Hangul U+AC01 words": "\uac01 ",
}


def fastest(call, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="a run's tokenizer/ folder, or a base model's")
    parser.add_argument("--max-chars", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    fmt = TextFormat(max_chars=args.max_chars, max_length=128)
    capped = [TermVectorizer(f, {}, np.ones(1), args.max_chars) for f in FAMILIES]
    uncapped = [TermVectorizer(f, {}, np.ones(1)) for f in FAMILIES]
    print(f"One event of {args.max_chars} characters (fastest of {args.rounds})\n")
    print("| text | n-grams | ms | n-grams, no cap after NFKD | ms | tokens | tokenizer ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, unit in TEXTS.items():
        text = fmt.format({"text": unit * args.max_chars})
        row = []
        for vectorizers in (capped, uncapped):
            row += [sum(len(v.terms(text)) for v in vectorizers),
                    fastest(lambda: [v.terms(text) for v in vectorizers], args.rounds)]
        tokens = len(tokenizer([text], add_special_tokens=False, verbose=False)["input_ids"][0])
        row += [tokens, fastest(lambda: fmt.token_ids(tokenizer, [text]), args.rounds)]
        print(f"| {name} | {row[0]:,} | {row[1]:.1f} | {row[2]:,} | {row[3]:.1f} | {row[4]:,} | {row[5]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
