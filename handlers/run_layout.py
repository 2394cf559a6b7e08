"""Every file and folder name of a run directory, in one place.

A run directory (what ``python -m training.train`` writes and ``archives/build.py`` packs):

    RUN/
      hierarchy.json          the cascade: labels, text format, decoding, weights, abstention
      tokenizer/              the tokenizer every level reads
      trunk/                  the shared lower layers (runs on a shared trunk)
      taxonomy/               the taxonomy level (a top on the trunk, or a whole checkpoint)
      subtaxonomy/<slug>/     one level per taxonomy with two or more subtaxonomies
      paths/                  the paths head: one classifier over every full path (when kept)
      lexical/                TF-IDF models per level, lexical/_paths, and the features they read
      scope/                  the scope model abstention reads (when the rule is scope)
      training.json           the resolved training configuration, data and split
      split.csv               which row went to train, val or test
      metrics.json, report.md, *.png   the evaluation

A level's folder holds ``model.safetensors`` (whole checkpoint) or ``top.safetensors`` (a top
on the trunk), or ``model.int8.onnx`` in an int8 archive. Nothing here imports torch.
"""

from __future__ import annotations

HIERARCHY_FILE = "hierarchy.json"
TOKENIZER_DIR = "tokenizer"
TRUNK_DIR = "trunk"
TAXONOMY_DIR = "taxonomy"
SUBTAXONOMY_DIR = "subtaxonomy"
PATHS_DIR = "paths"  # the path warm-up's top: one classifier over every taxonomy / subtaxonomy pair
LEXICAL_DIR = "lexical"
PATHS_LEXICAL = f"{LEXICAL_DIR}/_paths"  # TF-IDF over every full path; no level's slug starts with "_"
LEXICAL_FEATURES = f"{LEXICAL_DIR}/_features"  # the TF-IDF features every lexical model reads
SCOPE_DIR = "scope"  # what the scope score reads: centroids, whitening, val's signals (handlers/scope.py)

WEIGHTS_FILE = "model.safetensors"  # a stock checkpoint's weights (and the trunk's)
TOP_FILE = "top.safetensors"  # a level's own layers and head, on top of the shared trunk
ONNX_FILE = "model.int8.onnx"  # what an int8 archive carries per checkpoint instead

# Inside a lexical folder.
LEXICAL_JSON = "lexical.json"
LEXICAL_WEIGHTS = "lexical.safetensors"
FEATURES_JSON = "features.json"
FEATURES_WEIGHTS = "features.safetensors"

RECORD_FILE = "training.json"
SPLIT_FILE = "split.csv"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
TAXONOMY_CONFUSION_PLOT = "confusion_taxonomy.png"
COVERAGE_PLOT = "abstention_coverage.png"
REPORT_ARTIFACTS = (REPORT_FILE, METRICS_FILE, RECORD_FILE, HIERARCHY_FILE, "*.png")  # what tracking logs

# Only while training, in the folder the checkpoints are trained into; never part of a run.
WARMUP_DIR = "_warmup"  # the path warm-up checkpoint
TRAINER_DIR = "_trainer"  # the Trainer's epoch checkpoints


def confusion_plot(checkpoint: str) -> str:
    """The confusion matrix plot of a subtaxonomy level, by its checkpoint folder."""
    return f"confusion_{checkpoint.replace('/', '_')}.png"


def curves_plot(folder: str) -> str:
    """The training curves plot of one trained model, by its folder."""
    return f"curves_{folder.replace('/', '_')}.png"


def lexical_folder(slug: str) -> str:
    """The folder of a level's TF-IDF model."""
    return f"{LEXICAL_DIR}/{slug}"
