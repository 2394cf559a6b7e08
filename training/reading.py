"""How a run reads its events: the text format, the truncation and the tops' layers.

Chosen once from the run's own training texts and recorded in the config and in
hierarchy.json, so ``training.evaluate`` and the TorchServe handler read text exactly as
training did, through the one cascade:
- truncation: when more than ``LONG_SHARE`` of the training texts are longer than
  ``max_length`` tokens, read each text as windows (by default two: its head and its tail,
  each a pass of its own, probabilities averaged) instead of its head alone; on long posts
  this beat one pass over head and tail, and 256 tokens in one pass, at less cost
  (docs/results.md);
- top layers: with a shared trunk, each level's top has one layer on such texts and two
  otherwise (``choose_top_layers``): a one-layer top computes the first position only, so on
  windows of long text a level costs little beyond the trunk, while on short texts the
  second layer is worth a few tenths of a point (docs/results.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd

from handlers.text import TextFormat
from table.events import event_dicts
from training.config import TrainingConfig

LONG_SHARE = 0.10
TOP_LAYERS_SHORT, TOP_LAYERS_LONG = 2, 1  # --top-layers auto


def text_format(config: TrainingConfig) -> TextFormat:
    """The text format a run trains and serves with (its truncation as the config says): the
    one place its character cap is set, enough for every window of ``max_length`` tokens."""
    fmt = TextFormat(separator=config.separator, max_length=config.max_length,
                     max_chars=max(8192, config.max_length * config.max_windows * 16), max_windows=config.max_windows)
    return fmt if config.truncation == "auto" else dataclasses.replace(fmt, truncation=config.truncation)


def choose_truncation(text: TextFormat, tokenizer: Any, texts: Sequence[str], wanted: str) -> tuple[str, str, bool]:
    """The truncation to train and serve with, why (for the report), and whether the texts
    are long (over ``LONG_SHARE`` of them longer than ``max_length``), whatever was given."""
    lengths = np.array([len(ids) for ids in tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]])
    share = float((lengths > text.max_length).mean()) if len(lengths) else 0.0
    summary = (f"{100 * share:.1f}% of training texts are over {text.max_length} tokens "
               f"(median {int(np.median(lengths)) if len(lengths) else 0}, 90th percentile "
               f"{int(np.percentile(lengths, 90)) if len(lengths) else 0})")
    long = share > LONG_SHARE
    if wanted != "auto":
        return wanted, f"{wanted} (given); {summary}", long
    choice = "windows" if long else "head"
    return choice, f"{choice} (auto: over {100 * LONG_SHARE:.0f}% long -> windows); {summary}", long


def choose_top_layers(wanted: int | str, long: bool) -> tuple[int, str]:
    """K, the top layers each level trains over the shared trunk (0: no trunk), and why.

    auto: one on long texts, where on 20 Newsgroups one layer served long posts 1.17x and short
    ones 1.33x faster than two at equal accuracy; two on short ones, where the second layer
    gained a few tenths of a point (docs/results.md, "Top layers from the data").
    """
    if wanted != "auto":
        return int(wanted), f"{wanted or 'all'} (given)"
    k = TOP_LAYERS_LONG if long else TOP_LAYERS_SHORT
    return k, f"{k} (auto: {'long' if long else 'short'} texts -> {k})"


def choose_reading(config: TrainingConfig, tokenizer: Any,
                   frame: pd.DataFrame) -> tuple[TrainingConfig, TextFormat, dict[str, str]]:
    """The config with its truncation and top layers resolved from the training texts'
    lengths, the text format that follows, and why (printed, and kept in metrics.json)."""
    text = text_format(config)
    train_texts = [text.format(r) for r in event_dicts(frame[frame.split == "train"])]
    truncation, note, long = choose_truncation(text, tokenizer, train_texts, config.truncation)
    top_layers, top_note = choose_top_layers(config.top_layers, long)
    config = dataclasses.replace(config, truncation=truncation, top_layers=top_layers)
    return config, text_format(config), {"truncation": note, "top_layers": top_note}
