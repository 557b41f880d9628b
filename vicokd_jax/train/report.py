"""Reports of evaluation results: a console table, the confusion matrix and training curves as PNG files.

    result = acc.result()                                        # metrics.EvalAccumulator
    print(format_table(result))
    plot_confusion(result["confusion"], result.get("class_names"), workdir / "confusion.png")
    plot_curves(history, workdir / "curves.png")                 # metric records {"step": ..., "loss/total": ...}
    stage_plots(result, history, class_names, stage_dir, curve_keys)   # both, as the training loop writes them

Plots need matplotlib (optional): without it they log a warning and return False. They draw on an Agg canvas
and leave pyplot's global state alone.
"""
from __future__ import annotations

import logging
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["format_table", "plot_confusion", "plot_curves", "curve_series", "stage_plots"]


# ------------------------------------------------------------------------------------------------------------
# Console table
# ------------------------------------------------------------------------------------------------------------
_SCALAR_ORDER = ("top1", "top5", "map_class", "map_sample", "map_frame", "agreement", "pl_keep_rate",
                 "pl_precision", "mean_covisible_pairs", "reconstruction_loss", "num_examples")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.2f}"


def format_table(result: Mapping[str, Any]) -> str:
    """A small text table of a `result()` dict: the headline scalars, then one row per view (+ the mean).

    Keys that are absent are left out, None prints as "-"; works on partial results (e.g. from summary.json).
    """
    scalars = [(k, _cell(result[k])) for k in _SCALAR_ORDER if k in result]
    width = max([len(k) for k, _ in scalars] + [6])
    lines = [f"{'metric':<{width}}  {'value':>8}"] + [f"{k:<{width}}  {v:>8}" for k, v in scalars]

    view_keys = [k for k in result if k.startswith("per_view_") and isinstance(result[k], list)]
    if view_keys:
        names = [k[len("per_view_"):] for k in view_keys]
        widths = [max(len(n), 6) for n in names]
        lines += ["", "view  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths))]
        for v in range(max(len(result[k]) for k in view_keys)):
            cells = [_cell(result[k][v]) if v < len(result[k]) else "-" for k in view_keys]
            lines.append(f"{v:<4}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
        means = [_cell(result.get("mean_view_" + n)) for n in names]
        lines.append("mean  " + "  ".join(f"{c:>{w}}" for c, w in zip(means, widths)))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# Plots (optional matplotlib; Agg canvas, no pyplot global state)
# ------------------------------------------------------------------------------------------------------------
def _matplotlib():
    """(Figure, FigureCanvasAgg) or None (with a logged warning) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        log.warning("matplotlib is not installed (%s): plot skipped; `pip install matplotlib` to get plots", err)
        return None
    return Figure, FigureCanvasAgg


def _save(figure, canvas_cls, path) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas_cls(figure)
    figure.savefig(path, format="png", dpi=100, bbox_inches="tight")


def plot_confusion(confusion, class_names: Sequence[str] | None, path) -> bool:
    """Write the confusion matrix `[C,C]` (rows = true class) as a PNG heat map of row-normalised rates with the
    counts printed (C ≤ 30). Returns True if written, False (warning logged) when matplotlib is missing."""
    confusion = np.asarray(confusion, np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"plot_confusion: confusion must be [C,C], got shape {confusion.shape}")
    c = confusion.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"plot_confusion: {len(names)} class_names for a {c}x{c} confusion matrix")
    mpl = _matplotlib()
    if mpl is None:
        return False
    figure_cls, canvas_cls = mpl
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.45 * c + 2)
    fig = figure_cls(figsize=(side + 1, side))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set(xticks=range(c), yticks=range(c), xlabel="predicted", ylabel="true", title="confusion matrix")
    ax.set_xticklabels(names, rotation=90)
    ax.set_yticklabels(names)
    if c <= 30:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{int(confusion[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    _save(fig, canvas_cls, path)
    return True


def _numeric(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def curve_series(history: Sequence[Mapping[str, Any]],
                 keys: Sequence[str] | None = None) -> dict[str, dict[str, tuple]]:
    """The series `plot_curves` draws: {family: {key: (steps, values)}} for the scalar keys of `history`
    (family = the part of the key before '/'; step = the record's "step", else its index).

    keys: only these keys (ValueError naming the ones with no scalar value); default every scalar key.
    """
    available = sorted({k for rec in history for k, val in rec.items() if k != "step" and _numeric(val)})
    if keys is not None:
        missing = [k for k in keys if k not in available]
        if missing:
            raise ValueError(f"plot_curves: keys {missing} have no scalar value in history (available: {available})")
        available = list(keys)
    families: dict[str, dict[str, tuple]] = {}
    for key in available:
        points = [(rec.get("step", i), float(rec[key])) for i, rec in enumerate(history) if _numeric(rec.get(key))]
        families.setdefault(key.split("/", 1)[0], {})[key] = tuple(zip(*points))
    return families


def plot_curves(history: Sequence[Mapping[str, Any]], path, keys: Sequence[str] | None = None) -> bool:
    """Write training curves as a PNG: one subplot per metric family ("loss/total", "loss/sup" -> "loss"),
    one line per key against `step` (the record index where a record has none).

    history: metric records like {"step": 10, "loss/total": 1.2, "eval/top1": 40.0}; non-scalar values are skipped.
    keys: only these keys (ValueError naming the missing ones); default every scalar key.
    Returns True if written, False (warning logged) when matplotlib is missing or there is nothing to plot.
    """
    families = curve_series(history, keys)
    if not families:
        log.warning("plot_curves: no scalar metrics in history (%d records): %s not written", len(history), path)
        return False
    mpl = _matplotlib()
    if mpl is None:
        return False
    figure_cls, canvas_cls = mpl
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig = figure_cls(figsize=(5 * ncols, 3.5 * nrows))
    for i, (family, series) in enumerate(sorted(families.items())):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for key, (steps, values) in series.items():
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=key)
        ax.set(title=family, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, canvas_cls, path)
    return True


def stage_plots(result: Mapping[str, Any], history: Sequence[Mapping[str, Any]], class_names: Sequence[str] | None,
                out_dir, curve_keys: Sequence[str]) -> dict[str, str]:
    """A stage's plots in `out_dir`: `confusion.png` (when `result` has a confusion matrix) and `curves.png` of
    the `curve_keys` that `history` has (every scalar key when it has none of them).

    Returns {"confusion": path, "curves": path} for the files written (none without matplotlib).
    """
    out_dir = pathlib.Path(out_dir)
    plots = {}
    if "confusion" in result and plot_confusion(result["confusion"], class_names, out_dir / "confusion.png"):
        plots["confusion"] = str(out_dir / "confusion.png")
    shown = [k for k in curve_keys if any(k in record for record in history)]
    if plot_curves(history, out_dir / "curves.png", keys=shown or None):
        plots["curves"] = str(out_dir / "curves.png")
    return plots
