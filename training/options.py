"""The options of ``python -m training.train``: declared once, each with its default and help."""

from __future__ import annotations

import argparse

from handlers.abstention import DEFAULT_COVERAGE, SCORES, coverage_argument
from handlers.text import DEFAULT_MAX_WINDOWS
from table.events import add_column_flags

DEFAULT_EXPERIMENT = "event-taxonomy"  # MLflow's experiment name unless --experiment is given


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return number


def _paths_weight(value: str) -> str | float:
    if value in ("auto", "off"):
        return value
    try:
        weight = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto, off or a number from 0 to 1, not {value!r}") from None
    if not 0.0 <= weight <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {value}")
    return weight


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """Every option of ``python -m training.train``, with its default and help: the one place for them."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_options(p)
    _model_options(p)
    _training_options(p)
    _extras_options(p)
    return p.parse_args(argv)


def _data_options(p: argparse.ArgumentParser) -> None:
    io = p.add_argument_group("data and output")
    io.add_argument("--data", required=True, help="events table: .csv, .tsv, .jsonl or .parquet")
    io.add_argument("--output", required=True, help="run directory to create")
    io.add_argument("--overwrite", action="store_true", help="replace RUN_DIR if it exists (only once the new run succeeded)")
    add_column_flags(io)
    io.add_argument("--separator", default=". ", help="joins title and description into one text (default: '. ')")
    io.add_argument("--seed", type=int, default=42, help="seed for the split, initialisation and shuffling")


def _model_options(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument("--base-model", default=None,
                   help="hub id or local folder; default: the embedded all-MiniLM-L6-v2 converted to DistilBERT")
    m.add_argument("--max-length", type=int, default=128, help="tokens per text a transformer reads")
    m.add_argument("--truncation", choices=["auto", "head", "head_tail", "windows"], default="auto",
                   help="which tokens of a longer text the transformers read: its head, head_tail (the "
                        "first and the last half of --max-length), or windows (up to --max-windows windows "
                        "of --max-length tokens spread over the text, probabilities averaged per event); "
                        "auto: windows when over 10%% of the training texts are longer than --max-length, "
                        "else head")
    m.add_argument("--max-windows", type=_positive_int, default=DEFAULT_MAX_WINDOWS,
                   help="with --truncation windows: windows per text at most; each costs a model pass "
                        f"(default {DEFAULT_MAX_WINDOWS}: the head and the tail)")
    m.add_argument("--lexical", choices=["auto", "off"], default="auto",
                   help="auto: also fit a TF-IDF model per level on the whole text and mix its probabilities "
                        "in with the weight that scores best on val (0 leaves it out); off: transformers only")
    m.add_argument("--path-warmup-epochs", type=float, default=3,
                   help="first fine-tune the base on full paths (every taxonomy/subtaxonomy pair as one "
                        "class) for this many epochs; every classifier then starts from that encoder, so "
                        "each small subtaxonomy model inherits what all the data taught (default 3; 0: off)")
    m.add_argument("--top-layers", type=_top_layers, default="auto", metavar="K",
                   help="after the path warm-up, freeze the embeddings and lower layers as a trunk shared by "
                        "every classifier, and train only each one's top K layers and head: serving runs the "
                        "trunk once per event, the archive holds it once, training is faster; auto (default): "
                        "1 when the texts are long (as --truncation auto decides), else 2; "
                        "'all': every classifier fine-tunes the whole encoder, one whole checkpoint each")


def _top_layers(value: str) -> int | str:
    """K as a number of top layers; 'all' is 0 (no shared trunk); 'auto' is resolved from the data."""
    if value in ("all", "auto"):
        return 0 if value == "all" else value
    return _positive_int(value)


def _training_options(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("training (the --subtaxonomy-* flags override for the second level)")
    t.add_argument("--epochs", type=float, default=2,
                   help="maximum epochs of the taxonomy model (early stopping may end sooner; default 2: it "
                        "starts from the path warm-up)")
    t.add_argument("--subtaxonomy-epochs", type=float, default=None,
                   help="maximum epochs per subtaxonomy model (default: 3 after a path warm-up, else --epochs)")
    t.add_argument("--learning-rate", type=float, default=1e-4, help="peak AdamW learning rate")
    t.add_argument("--subtaxonomy-learning-rate", type=float, default=None,
                   help="learning rate of subtaxonomy models (default: half of --learning-rate after a path "
                        "warm-up, since they start from the warm-up's rows of their paths and only refine "
                        "them; else --learning-rate)")
    t.add_argument("--batch-size", type=int, default=32, help="training batch size")
    t.add_argument("--eval-batch-size", type=int, default=128, help="evaluation batch size")
    t.add_argument("--warmup-ratio", type=float, default=0.06, help="share of steps with linear warm-up")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    t.add_argument("--patience", type=int, default=2, help="epochs without val improvement before stopping")
    t.add_argument("--class-weights", choices=["none", "balanced"], default="none",
                   help="'balanced' weights the loss by inverse class frequency, for imbalanced data")
    t.add_argument("--decoding", choices=["auto", "greedy", "joint"], default="auto",
                   help="how the served cascade picks a path: 'auto' keeps whichever of greedy "
                        "(best taxonomy, then its best subtaxonomy) and joint (best product over the "
                        "likeliest taxonomies) scores better on val")
    t.add_argument("--paths-weight", type=_paths_weight, default="auto", metavar="auto|off|W",
                   help="with a path warm-up and a shared trunk, keep the warm-up's top as a paths head (one "
                        "classifier over every full path, one more top pass per event) and mix its "
                        "probabilities into each path's score with weight W; auto: the W from 0, 0.1, ..., 1 "
                        "that scores best on val, kept when it gains at least 0.25 points over no head; off: no head. "
                        "With --lexical auto a TF-IDF model over the paths is weighed in too (its share chosen on val)")
    t.add_argument("--abstain-coverage", type=coverage_argument, default=DEFAULT_COVERAGE, metavar="C|off",
                   help="answers abstain (\"abstain\": true, no path fits) below a threshold on --abstain-score "
                        f"chosen so that a share C of val answers is kept (default {DEFAULT_COVERAGE}); off: never abstain")
    t.add_argument("--abstain-score", choices=SCORES, default=SCORES[0],
                   help="what abstention reads: scope (default), how much an event looks like the val split's "
                        "(its path_score and the Mahalanobis distances of the taxonomy and subtaxonomy models' "
                        "[CLS] states to the train split's centroids, ranked against val's; one pass over the "
                        "train split to fit); path_score: the answer's path_score alone")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="CPU training arithmetic: bf16 autocast trains about twice as fast on CPUs with native "
                        "bf16 (avx512_bf16, AMX); auto: bf16 on such CPUs, fp32 elsewhere (a GPU uses fp16)")
    t.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of this process (default: torch's choice, which follows "
                        "OMP_NUM_THREADS, e.g. as torchrun sets it)")
    t.add_argument("--parallel-models", type=_positive_int, default=1, metavar="N",
                   help="train the subtaxonomy models in N worker processes at once, each with its share "
                        "of the threads (default 1: one after the other). Under torchrun they are also "
                        "spread over the ranks")
    t.add_argument("--quiet", action="store_true", help="no progress bars")


def _extras_options(p: argparse.ArgumentParser) -> None:
    x = p.add_argument_group("tracking and energy (optional extras: scripts/setup.sh --extras)")
    x.add_argument("--tracking-uri", nargs="?", const="mlruns", default=None, metavar="URI",
                   help="log params, per-epoch metrics of every model, plots and report to MLflow; "
                        "without a value: a local store in ./mlruns (view it with "
                        "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db)")
    x.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    x.add_argument("--energy", action="store_true",
                   help="estimate training energy and CO2 with codecarbon (offline) into metrics.json and report.md")
    x.add_argument("--energy-country", default="USA",
                   help="ISO 3166 alpha-3 code of the grid whose carbon intensity applies (default: USA)")
