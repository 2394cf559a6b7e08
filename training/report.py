"""The end of a run: val and test scored through the settled cascade, metrics.json, report.md, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from handlers.hierarchy import Hierarchy
from handlers.run_layout import (COVERAGE_PLOT, METRICS_FILE, REPORT_FILE, TAXONOMY_CONFUSION_PLOT, confusion_plot,
                                 curves_plot)
from table.scoring import Evaluation, evaluate_frame, summary_line
from training.choices import Settled
from training.plots import plot_confusion, plot_coverage, plot_curves


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def write_report(run_dir: Path, metrics: dict[str, Any], summaries: list[dict[str, Any]],
                 images: list[str], info: dict[str, Any]) -> Path:
    lines = [f"# Training report: {info.get('run_name', run_dir.name)}", ""]
    lines += [f"Data: `{info['data']}` ({info['split']['source']} split: "
              + ", ".join(f"{k} {v}" for k, v in info["split"]["counts"].items()) + ")",
              f"Base model: `{info['base_model'].get('id') or info['base_model'].get('path')}`", ""]
    reading = metrics.get("long_text", {})
    if reading.get("truncation"):
        lines += [f"Reading: truncation {reading['truncation']}"
                  + (f"; top layers {reading['top_layers']}" if reading.get("top_layers") else ""), ""]
    if "decoding" in metrics:
        tried = metrics.get("decoding_val_path_accuracy")
        detail = (f" (val path accuracy: greedy {_pct(tried['greedy'])}, joint {_pct(tried['joint'])})"
                  if tried else "")
        lines += [f"Decoding: {metrics['decoding']}{detail}", ""]
    if metrics.get("paths_head", {}).get("val_path_accuracy_by_weight"):
        head = metrics["paths_head"]
        by_weight = head["val_path_accuracy_by_weight"]
        parts = (["paths head"] if head.get("head", head["weight"] > 0) else []) + \
            ([f"TF-IDF share {head['lexical_share']}"] if head.get("lexical_share") else [])
        lines += [f"Paths level: weight {head['weight']}{' (' + ', '.join(parts) + ')' if parts else ''} "
                  f"(val path accuracy {_pct(by_weight[str(head['weight'])])}; without it {_pct(by_weight['0.0'])})", ""]
    if "abstention" in metrics:
        lines += [abstention_line(metrics), ""] + operating_point_lines(metrics["abstention"])
    if info["split"]["rare_in_train"]:
        lines += ["Paths too rare to stratify, kept in train only: "
                  + ", ".join(info["split"]["rare_in_train"]), ""]
    lines += ["## Summary", "", "| split | rows | taxonomy acc | taxonomy macro-F1 | taxonomy weighted-F1 | "
              "leaf acc | leaf macro-F1 | leaf acc given taxonomy | path acc |", "|---|---|---|---|---|---|---|---|---|"]
    for split, m in metrics["splits"].items():
        lines.append(
            f"| {split} | {m['rows']} | {_pct(m['taxonomy']['accuracy'])} | {_pct(m['taxonomy']['macro_f1'])} | "
            f"{_pct(m['taxonomy']['weighted_f1'])} | {_pct(m['subtaxonomy']['accuracy'])} | "
            f"{_pct(m['subtaxonomy']['macro_f1'])} | {_pct(m['subtaxonomy_given_taxonomy']['accuracy'])} | "
            f"{_pct(m['path_accuracy'])} |"
        )
    lines += ["", "## Models", "", "| model | labels | train rows | epochs run | best val acc | seconds |",
              "|---|---|---|---|---|---|"]
    for s in summaries:
        best = "–" if s["best_val_accuracy"] is None else f"{100 * s['best_val_accuracy']:.2f}"
        lines.append(f"| {s['name']} | {s['labels']} | {s['train_rows']} | {s['epochs_run']} | {best} | {s['seconds']:.0f} |")
    if metrics.get("energy"):
        lines += [""] + energy_lines(metrics["energy"])
    main_split = "test" if "test" in metrics["splits"] else "val"
    m = metrics["splits"][main_split]
    lines += ["", f"## Per class ({main_split})", "", "### Taxonomy", "",
              "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, c in m["taxonomy"]["per_class"].items():
        lines.append(f"| {label} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {c['support']} |")
    lines += ["", "### Subtaxonomy (end to end)", "", "| path | precision | recall | F1 | support |",
              "|---|---|---|---|---|"]
    for label, c in m["subtaxonomy"]["per_class"].items():
        lines.append(f"| {label} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {c['support']} |")
    lines += ["", "### Subtaxonomy accuracy given the true taxonomy", "", "| taxonomy | rows | accuracy |", "|---|---|---|"]
    for tax, c in m["subtaxonomy_given_taxonomy"]["per_taxonomy"].items():
        lines.append(f"| {tax} | {c['rows']} | {_pct(c['accuracy_given_taxonomy'])} |")
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in images] + [""]
    path = run_dir / REPORT_FILE
    path.write_text("\n".join(lines))
    return path


def abstention_line(metrics: dict[str, Any]) -> str:
    """The report.md line of the rule: its threshold, and per split its coverage and accuracies."""
    rule = metrics["abstention"]
    if not rule["min_score"]:
        return f"Abstention: none (target coverage {rule['target_coverage']})"
    parts = [f"{split} coverage {_pct(m['abstention']['coverage'])}, path acc counting abstentions wrong "
             f"{_pct(m['abstention']['accuracy_abstain_wrong'])}, when answered "
             f"{_pct(m['abstention']['accuracy_when_answered'])}" for split, m in metrics["splits"].items()]
    return (f"Abstention: {rule.get('score', 'path_score')} below {rule['min_score']:.6f} (chosen for val coverage "
            f"{rule['target_coverage']}): " + "; ".join(parts))


def operating_point_lines(rule: dict[str, Any]) -> list[str]:
    """The rule's other operating points on val, as a table (none without a rule)."""
    points = rule.get("operating_points") or []
    if not points:
        return []
    lines = [f"Other operating points on val ({rule['score']} below min_score abstains; a request's `min_score`, "
             "or hierarchy.json's, moves it without training again):", "",
             "| val coverage | min_score | val path acc counting abstentions wrong | when answered |", "|---|---|---|---|"]
    lines += [f"| {p['coverage']} | {p['min_score']:.6f} | {_pct(p['val_accuracy_abstain_wrong'])} | "
              f"{_pct(p['val_accuracy_when_answered'])} |" for p in points]
    return lines + [""]


def energy_lines(energy: dict[str, Any]) -> list[str]:
    """The report.md section: figures first, then how they were obtained."""
    return [
        "## Energy (training)",
        "",
        f"- {energy['energy_kwh'] * 1000:.3g} Wh in {energy['seconds']:.0f} s "
        f"(CPU {energy['cpu_kwh'] * 1000:.3g} Wh, RAM {energy['ram_kwh'] * 1000:.3g} Wh, "
        f"GPU {energy['gpu_kwh'] * 1000:.3g} Wh)",
        f"- {energy['co2_kg'] * 1000:.3g} g CO2-eq at the {energy['country']} grid average",
        f"- {energy['tool']}, hardware: {energy['measured_by']}. An estimate, not a meter reading.",
        "",
    ]


def evaluate_and_report(run_tmp: Path, settled: Settled, frame: pd.DataFrame, summaries: list[dict[str, Any]],
                        info: dict[str, Any], energy: dict[str, Any] | None = None,
                        long_text: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score val and test through the settled cascade, then write metrics, plots, report."""
    cascade = settled.cascade
    metrics: dict[str, Any] = {"splits": {}, "precision": cascade.precision, **settled.choices}
    last = None
    for split in ("val", "test"):
        rows = frame[frame.split == split]
        if rows.empty:
            continue
        result = settled.val if split == "val" else evaluate_frame(cascade, rows)
        metrics["splits"][split] = result.scores
        print(summary_line(split, result.scores), flush=True)
        last = (split, rows, result)
    metrics["models"] = [{k: v for k, v in s.items() if k != "history"} for s in summaries]
    if energy:
        metrics["energy"] = energy
    if long_text:
        metrics["long_text"] = long_text
    images = plot_split(run_tmp, settled.hierarchy, *last) if last is not None else []
    for s in summaries:
        images.append(plot_curves(s["history"], s["name"], run_tmp / curves_plot(s["folder"])).name)
    (run_tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_report(run_tmp, metrics, summaries, images, info)
    return metrics


def plot_split(run_tmp: Path, hierarchy: Hierarchy, split: str, rows: pd.DataFrame, result: Evaluation) -> list[str]:
    """The confusion matrices (taxonomy, and each subtaxonomy given its taxonomy) and the
    abstention curve of one split's answers; their file names."""
    images = [plot_confusion(list(rows.taxonomy), [a["taxonomy"]["label"] for a in result.answers],
                             hierarchy.taxonomy.labels, f"taxonomy ({split})", run_tmp / TAXONOMY_CONFUSION_PLOT).name]
    for tax, level in hierarchy.subtaxonomies.items():
        mine = [i for i, t in enumerate(rows.taxonomy) if t == tax]
        if not level.checkpoint or not mine:
            continue
        images.append(plot_confusion([rows.subtaxonomy.iloc[i] for i in mine], [result.given[i] for i in mine],
                                     level.labels, f"{tax}: subtaxonomy given taxonomy ({split})",
                                     run_tmp / confusion_plot(level.checkpoint)).name)
    images.append(plot_coverage(rows, result.answers, hierarchy.abstention, split, run_tmp / COVERAGE_PLOT).name)
    return images
