"""The study's report: mean ± std over seeds, seed-paired differences, results.md, results.csv and plots.

    from vicokd_jax import sweep, sweep_report
    rows = sweep.collect("runs/study")                     # one row per finished student run
    sweep_report.write_report(rows, "runs/study")          # results.md, results.csv, plots

A row is a dict with at least `group` (the setting shared by its seeds), `method`, `labeled_fraction`, `overlap`,
`seed` and `top1`, and usually `teacher` (the teacher it distils from; `vicokd_jax.sweep.student_row` makes them
from a run's summary). Paired differences compare runs of the same labels, overlap and teacher.
"""
from __future__ import annotations

import csv
import json
import pathlib
import statistics


def read_summary(workdir: pathlib.Path):
    """The run's summary.json, or None when it has none or stopped on preemption (an unfinished run)."""
    path = workdir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return None if summary.get("preempted") else summary


def teacher_rows(root) -> list:
    """One row per finished teacher under `root/teachers`: its top-1, visible-view top-1 and seconds."""
    rows = []
    for workdir in sorted((pathlib.Path(root) / "teachers").glob("*")):
        summary = read_summary(workdir)
        if summary and "teacher" in summary:
            t = summary["teacher"]
            rows.append(dict(teacher=workdir.name, top1=t["top1"], mean_view_top1_visible=t.get(
                "mean_view_top1_visible"), seconds=t.get("seconds")))
    return rows


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(rows, group_a: str, group_b: str, key: str = "top1") -> dict:
    """`key` of group_a minus group_b, seed by seed (a seed fixes the labelled subset and the initialisation, so
    the pairing removes their share of the spread): per-seed differences, their mean and sample std."""
    by_seed = {(r["group"], r["seed"]): r[key] for r in rows}
    seeds = sorted(s for g, s in by_seed if g == group_a and (group_b, s) in by_seed)
    if not seeds:
        raise ValueError(f"no seed has finished runs of both {group_a!r} and {group_b!r}")
    diffs = [by_seed[group_a, s] - by_seed[group_b, s] for s in seeds]
    mean, std = mean_std(diffs)
    return dict(seeds=seeds, differences=diffs, mean=mean, std=std)


def aggregate(rows) -> list:
    """One row per group (method × fraction × overlap × teacher): mean ± std over seeds of each metric."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    out = []
    for group, members in groups.items():
        first = members[0]
        agg = dict(group=group, method=first["method"], labeled_fraction=first["labeled_fraction"],
                   overlap=first["overlap"], teacher=first.get("teacher"), seeds=len(members))
        for key in ("top1", "mean_view_top1_visible", "agreement"):
            values = [m[key] for m in members if m.get(key) is not None]
            if values:
                agg[key], agg[f"{key}_std"] = mean_std(values)
        out.append(agg)
    return out


def markdown_table(aggregated, teachers=()) -> str:
    """Markdown: the teachers' table (when given), then one line per group of `aggregate`'s rows (none when
    there are teachers but no students)."""
    lines = []
    if teachers:
        lines += ["| teacher | top-1 | mean visible-view top-1 |", "|---|---:|---:|"]
        lines += [f"| {t['teacher']} | {t['top1']:.2f} | {t.get('mean_view_top1_visible') or float('nan'):.2f} |"
                  for t in teachers]
        lines.append("")
    if teachers and not aggregated:  # a sweep of teachers only
        return "\n".join(lines)
    lines += ["| method | labels | overlap | teacher | seeds | top-1 (mean ± std) | visible-view top-1 | agreement |",
              "|---|---:|---|---|---:|---:|---:|---:|"]
    for a in aggregated:
        vis = (f"{a['mean_view_top1_visible']:.2f} ± {a['mean_view_top1_visible_std']:.2f}"
               if "mean_view_top1_visible" in a else "–")
        agree = f"{a['agreement']:.2f}" if "agreement" in a else "–"
        lines.append(f"| {_setting(a)} | {a['seeds']} | {a['top1']:.2f} ± {a['top1_std']:.2f} | {vis} | {agree} |")
    return "\n".join(lines) + "\n"


def _setting(a) -> str:
    """The setting cells of an `aggregate` row: method, labels, overlap, teacher ("–" when rows have none)."""
    return f"{a['method']} | {a['labeled_fraction']:g} | {a['overlap']} | {a.get('teacher') or '–'}"


def paired_table(rows, aggregated, reference: str = "vicokd") -> str:
    """Markdown: `reference` minus every other variant of the same labels, overlap and teacher, paired by seed."""
    def setting(a):
        return a["labeled_fraction"], a["overlap"], a.get("teacher")

    references = {setting(a): a["group"] for a in aggregated if a["method"] == reference}
    lines = []
    for a in aggregated:
        if a["method"] == reference or setting(a) not in references:
            continue
        try:
            d = paired_difference(rows, references[setting(a)], a["group"])
        except ValueError:  # no seed in common yet
            continue
        lines.append(f"| {_setting(a)} | {len(d['seeds'])} | {d['mean']:+.2f} ± {d['std']:.2f} | "
                     f"{' '.join(f'{x:+.1f}' for x in d['differences'])} |")
    if not lines:
        return ""
    return "\n".join(["", f"Paired by seed: top-1 of `{reference}` minus the variant's, same labels, overlap and "
                          "teacher.", "",
                      "| variant | labels | overlap | teacher | seeds | difference (mean ± std) | per seed |",
                      "|---|---:|---|---|---:|---:|---|", *lines]) + "\n"


def write_report(rows, root) -> dict:
    """results.md (teachers + mean ± std table), results.csv (one line per run) and plots under `root`."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    aggregated = aggregate(rows)
    (root / "results.md").write_text(markdown_table(aggregated, teacher_rows(root)) + paired_table(rows, aggregated))
    fields = ["run", "group", "method", "teacher", "seed", "labeled_fraction", "overlap", "top1", "mean_view_top1",
              "mean_view_top1_visible", "agreement", "seconds"]
    with open(root / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    paths = {"markdown": root / "results.md", "csv": root / "results.csv"}
    if rows:
        paths.update(_plots(rows, aggregated, root))
    return paths


def _plots(rows, aggregated, root: pathlib.Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    several_teachers = len({a.get("teacher") for a in aggregated}) > 1
    for method, teacher in dict.fromkeys((a["method"], a.get("teacher")) for a in aggregated):
        points = sorted((a["labeled_fraction"], a["top1"], a["top1_std"]) for a in aggregated
                        if (a["method"], a.get("teacher")) == (method, teacher) and a["overlap"] == "partial")
        if len(points) > 1:
            x, y, e = zip(*points)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3,
                        label=f"{method} ({teacher})" if several_teachers else method)
    if ax.lines:
        ax.set(xscale="log", xlabel="labelled fraction", ylabel="test top-1 (%)",
               title="SynthMV (partial overlap): accuracy vs labels")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths["accuracy_vs_fraction"] = root / "accuracy_vs_fraction.png"
        fig.savefig(paths["accuracy_vs_fraction"], dpi=120)
    plt.close(fig)

    per_view = [r for r in rows if r.get("per_view_top1_visible") and r["labeled_fraction"] == 0.1]
    if per_view:
        groups = list(dict.fromkeys(r["group"] for r in per_view))
        num_views = len(per_view[0]["per_view_top1_visible"])
        fig, ax = plt.subplots(figsize=(max(6, len(groups) * 0.6), 4))
        width = 0.8 / num_views
        for v in range(num_views):
            means = [mean_std([r["per_view_top1_visible"][v] for r in per_view if r["group"] == g])[0]
                     for g in groups]
            ax.bar([i + v * width for i in range(len(groups))], means, width, label=f"view {v}")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], groups, rotation=60, ha="right",
                      fontsize=6)
        ax.set(ylabel="top-1 where the person is visible (%)", title="Per-view accuracy (10% labels)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
        fig.tight_layout()
        paths["per_view"] = root / "per_view.png"
        fig.savefig(paths["per_view"], dpi=120)
        plt.close(fig)
    return paths
