"""Generate the synthetic leisure-events table used to demo and test the bundle.

Every row of ``training/sample_events.csv`` is invented: titles and descriptions are
assembled from templates and small word banks, with a fixed seed, so the file can be
rebuilt byte for byte and carries no real event, venue, person or licence question.
It exists so that the hierarchical classifier (taxonomy -> subtaxonomy) can be trained,
packaged and served end to end in demos and tests without any private data.

The table is deliberately not trivially separable: every description carries generic
sentences shared by all classes (tickets, access, parking, doors), some rows borrow the
vocabulary of a neighbouring class (a jazz brunch, a family concert, a museum night with
a DJ) while keeping one plausible label, a few titles are empty and a few descriptions
are a single sentence. About 15% are long listings (200-600 tokens) like real event pages:
the event's own sentences wrapped in paragraphs about the venue, the series, tickets and
access, with what the event is about sometimes only near the end.

Usage::

    python -m training.make_sample_events                      # training/sample_events.csv
    python -m training.make_sample_events --output /tmp/e.csv --rows 600
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from pathlib import Path

SEED = 2026
DEFAULT_ROWS = 1800
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "sample_events.csv"
COLUMNS = ("title", "description", "taxonomy", "subtaxonomy")

HARD_SHARE = 0.15  # rows that borrow a neighbouring class's vocabulary
SIBLING_SHARE = 0.3  # rows with one sentence from another leaf of the same taxonomy
GENERIC_TITLE_SHARE = 0.12
EMPTY_TITLE_SHARE = 0.05
SHORT_DESCRIPTION_SHARE = 0.05
MIN_WORDS, MAX_WORDS = 30, 90
LONG_SHARE = 0.15  # long listings: the event's own description inside paragraphs of practical text
LONG_WORDS = (150, 450)  # about 200-600 tokens with the embedded base's tokenizer

Leaf = tuple[str, str]
ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")  # "a" before a vowel becomes "an"

# The vocabulary (training/sample_vocabulary.json), read once:
# - banks: word banks shared by every template; a template names a bank as {bank};
# - taxonomy: class profiles, title templates and class-specific sentences per leaf;
# - taxonomy_lines: sentences each leaf of a taxonomy may use, blurring leaves within a taxonomy;
# - generic_lines: sentences any class may use, logistics that carry no signal about the label;
# - long_lines: practical paragraphs of long listings, true of any event, so they carry no class;
# - generic_titles: titles that say nothing about the class;
# - hard_pairs: hard rows, (labelled leaf, leaf whose vocabulary it borrows, hybrid titles).
VOCABULARY = json.loads((Path(__file__).resolve().parent / "sample_vocabulary.json").read_text(encoding="utf-8"))
BANKS: dict[str, list[str]] = VOCABULARY["banks"]
TAXONOMY: dict[str, dict[str, dict[str, list[str]]]] = VOCABULARY["taxonomy"]
TAXONOMY_LINES: dict[str, list[str]] = VOCABULARY["taxonomy_lines"]
GENERIC_LINES: list[str] = VOCABULARY["generic_lines"]
LONG_LINES: list[str] = VOCABULARY["long_lines"]
GENERIC_TITLES: list[str] = VOCABULARY["generic_titles"]
HARD_PAIRS: list[tuple[Leaf, Leaf, list[str]]] = [(tuple(a), tuple(b), titles)
                                                   for a, b, titles in VOCABULARY["hard_pairs"]]


def fill(template: str, rng: random.Random) -> str:
    """Fill every {bank} slot of a template with a random entry of that word bank."""
    parts = template.split("{")
    out = [parts[0]]
    for part in parts[1:]:
        bank, rest = part.split("}", 1)
        out.append(rng.choice(BANKS[bank]) + rest)
    return ARTICLE.sub(r"\1n ", "".join(out))


def leaves() -> list[Leaf]:
    """All (taxonomy, subtaxonomy) pairs in declaration order."""
    return [(tax, sub) for tax, subs in TAXONOMY.items() for sub in subs]


def class_counts(total: int, rng: random.Random) -> dict[Leaf, int]:
    """Split exactly ``total`` rows over the leaves, unevenly (weights drawn from 40 to 80).

    Every leaf gets at least one row; the rest is shared by weight, largest remainder first.
    """
    all_leaves = leaves()
    weights = [rng.uniform(40, 80) for _ in all_leaves]
    shares = [w * (total - len(all_leaves)) / sum(weights) for w in weights]
    counts = {leaf: 1 + int(share) for leaf, share in zip(all_leaves, shares)}
    by_remainder = sorted(range(len(all_leaves)), key=lambda i: int(shares[i]) - shares[i])
    for i in by_remainder[: total - sum(counts.values())]:
        counts[all_leaves[i]] += 1
    return counts


def word_count(sentences: list[str]) -> int:
    """Number of whitespace-separated words over all sentences."""
    return sum(len(s.split()) for s in sentences)


def describe(leaf: Leaf, borrowed: Leaf | None, rng: random.Random) -> str:
    """Build a 30-90 word description of 2-5 sentences for ``leaf``.

    A hard row (``borrowed`` given) mixes in sentences from the neighbouring leaf.
    """
    tax, sub = leaf
    own_lines = TAXONOMY[tax][sub]["lines"]
    if borrowed is None:
        specific = rng.sample(own_lines, rng.choice((1, 1, 2, 2, 3)))
    else:
        specific = rng.sample(TAXONOMY[borrowed[0]][borrowed[1]]["lines"], rng.choice((1, 2)))
        specific.append(rng.choice(own_lines if rng.random() < 0.5 else TAXONOMY_LINES[tax]))
    siblings = [s for s in TAXONOMY[tax] if s != sub]
    if siblings and rng.random() < SIBLING_SHARE:
        specific.append(rng.choice(TAXONOMY[tax][rng.choice(siblings)]["lines"]))
    shared = rng.sample(TAXONOMY_LINES[tax], rng.choice((0, 1, 1)))
    generic = rng.sample(GENERIC_LINES, 4)
    body = specific + shared
    rng.shuffle(body)
    sentences = [fill(s, rng) for s in body]
    for line in generic:
        if len(sentences) >= 2 and word_count(sentences) >= MIN_WORDS and rng.random() < 0.5:
            break
        if len(sentences) == 5:
            break
        sentences.append(fill(line, rng))
    while word_count(sentences) > MAX_WORDS:
        sentences.pop()
    return " ".join(sentences)


def lengthen(description: str, rng: random.Random) -> str:
    """A long listing: the description among paragraphs of practical text.

    Half of them put the description last, after all the practical text, so a model that
    reads only the first tokens misses what the event is about; the rest put it anywhere.
    """
    target = rng.randint(*LONG_WORDS)
    practical: list[str] = []
    lines = LONG_LINES + GENERIC_LINES
    while len(description.split()) + word_count(practical) < target:
        practical.append(fill(rng.choice(lines), rng))
    cut = len(practical) if rng.random() < 0.5 else rng.randint(0, len(practical))
    return " ".join([*practical[:cut], description, *practical[cut:]])


def make_row(leaf: Leaf, rng: random.Random,
             pairs: dict[Leaf, list[tuple[Leaf, list[str]]]]) -> dict[str, str]:
    """One event row for ``leaf``: plain, hard (borrowed vocabulary), short or untitled."""
    tax, sub = leaf
    titles = TAXONOMY[tax][sub]["titles"]
    borrowed: Leaf | None = None
    if leaf in pairs and rng.random() < HARD_SHARE * len(leaves()) / len(pairs):
        borrowed, hybrid_titles = rng.choice(pairs[leaf])
        if rng.random() < 0.5:
            titles = hybrid_titles
        else:
            titles = TAXONOMY[borrowed[0]][borrowed[1]]["titles"]
    if rng.random() < SHORT_DESCRIPTION_SHARE:
        pool = TAXONOMY[borrowed[0]][borrowed[1]]["lines"] if borrowed else TAXONOMY[tax][sub]["lines"]
        description = fill(rng.choice(pool), rng)
    else:
        description = describe(leaf, borrowed, rng)
    if rng.random() < LONG_SHARE:
        description = lengthen(description, rng)
    if rng.random() < GENERIC_TITLE_SHARE:
        titles = GENERIC_TITLES
    title = "" if rng.random() < EMPTY_TITLE_SHARE else fill(rng.choice(titles), rng)
    return {"title": title, "description": description, "taxonomy": tax, "subtaxonomy": sub}


def generate(total: int, seed: int = SEED) -> list[dict[str, str]]:
    """All rows, shuffled deterministically."""
    rng = random.Random(seed)
    pairs: dict[Leaf, list[tuple[Leaf, list[str]]]] = {}
    for leaf, borrowed, titles in HARD_PAIRS:
        pairs.setdefault(leaf, []).append((borrowed, titles))
    rows = [make_row(leaf, rng, pairs)
            for leaf, n in class_counts(total, rng).items() for _ in range(n)]
    rng.shuffle(rows)
    return rows


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    """Write the rows as UTF-8 CSV with a header and ``\\n`` line endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="CSV file to write (default: training/sample_events.csv)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"number of rows to generate (default: {DEFAULT_ROWS})")
    args = parser.parse_args()
    if args.rows < len(leaves()):
        parser.error(f"--rows must be at least {len(leaves())} (one per subtaxonomy)")
    rows = generate(args.rows)
    write_csv(rows, args.output)
    print(f"wrote {len(rows)} rows, {len(TAXONOMY)} taxonomies, {len(leaves())} subtaxonomies "
          f"to {args.output}")


if __name__ == "__main__":
    main()
