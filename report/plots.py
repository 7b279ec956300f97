"""Small matplotlib charts for the report. Each returns a Figure; png_data_uri embeds one in the
page as a base64 PNG, so the report is a single file. The Agg backend needs no display.
"""

import base64
import io
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use('Agg')

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def png_data_uri(figure: Figure) -> str:
    """The figure as a `data:image/png;base64,...` URI; closes the figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=100, bbox_inches='tight')
    plt.close(figure)
    return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def reliability_points(histogram: np.ndarray, num_bins: int = 10) -> np.ndarray:
    """Regroups a calibration histogram (rows: examples, sum of labels, sum of predictions, in
    order of prediction) into at most num_bins bins of about equal example count.

    Equal-width bins would put nearly every conversion prediction into the first bin. Returns
    rows of mean prediction, observed rate and example count.
    """
    counts = histogram[:, 0]
    middle = np.cumsum(counts) - counts / 2  # a bucket is never split: its middle picks the bin
    bins = np.minimum((middle / counts.sum() * num_bins).astype(int), num_bins - 1)
    sums = np.zeros((num_bins, 3))
    np.add.at(sums, bins, histogram)
    sums = sums[sums[:, 0] > 0]
    return np.column_stack([sums[:, 2] / sums[:, 0], sums[:, 1] / sums[:, 0], sums[:, 0]])


def reliability_diagram(histograms: Mapping[str, np.ndarray], title: str,
                        num_bins: int = 10) -> Figure:
    """Observed rate against mean prediction per bin, one curve per model (the first solid and
    on top, the others dashed), with 95% binomial error bars; calibrated is the diagonal."""
    figure, axes = plt.subplots(figsize=(4.5, 4.2))
    top = 0.0
    for i, (label, histogram) in enumerate(histograms.items()):
        predicted, observed, count = reliability_points(histogram, num_bins).T
        error = 1.96 * np.sqrt(observed * (1 - observed) / count)
        style = {} if i == 0 else {'linestyle': '--', 'markerfacecolor': 'none'}
        axes.errorbar(predicted, observed, yerr=error, marker='os^'[i % 3], capsize=3,
                      label=label, zorder=3 - i, **style)
        top = max(top, predicted.max(), (observed + error).max())
    top *= 1.05
    axes.plot([0, top], [0, top], color='grey', linestyle='--', linewidth=1, label='calibrated')
    axes.set(xlim=(0, top), ylim=(0, top), xlabel='mean prediction', ylabel='observed rate',
             title=title)
    axes.legend(loc='upper left', fontsize='small')
    return figure


def auc_by_slice(aucs: Mapping[str, Sequence[float]], slices: Sequence[str],
                 baseline: Optional[Mapping[str, Sequence[float]]] = None) -> Figure:
    """Horizontal bars of AUC per slice, one colour per task; the baseline's AUC as a black tick.
    NaN (a slice without both classes) leaves the bar out."""
    height = 0.8 / len(aucs)
    figure, axes = plt.subplots(figsize=(7, 0.25 + 0.3 * len(slices) * len(aucs)))
    rows = np.arange(len(slices))
    for i, (task, values) in enumerate(aucs.items()):
        offsets = rows + (i - (len(aucs) - 1) / 2) * height
        axes.barh(offsets, values, height=height, label=task)
        if baseline is not None:
            axes.scatter(baseline[task], offsets, marker='|', s=120, color='black',
                         label='baseline' if i == 0 else None, zorder=3)
    axes.axvline(0.5, color='grey', linestyle='--', linewidth=1)
    axes.set_yticks(rows, slices)
    axes.invert_yaxis()
    lowest = min((v for values in aucs.values() for v in values if not np.isnan(v)), default=0.5)
    axes.set(xlim=(min(0.4, lowest - 0.05), 1.0), xlabel='AUC', title='AUC by slice')
    axes.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize='small')
    return figure


def pareto_front(points: Sequence[Mapping]) -> Figure:
    """Click AUC against conversion AUC, one colour per system, each point labelled with its
    loss weights; the points on the Pareto front filled and joined by a dashed line, the others
    hollow. `points`: the benchmark's pareto.json points (bench/tradeoffs.py)."""
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for i, system in enumerate(dict.fromkeys(point['system'] for point in points)):
        colour = f'C{i % 10}'
        own = [point for point in points if point['system'] == system]
        axes.scatter([p['click_auc'] for p in own], [p['conversion_auc'] for p in own], s=45,
                     edgecolors=colour, facecolors=[colour if p['pareto'] else 'none' for p in own],
                     zorder=3)
        axes.scatter([], [], s=45, color=colour, label=system)  # the legend's marker: filled
        for p in own:
            axes.annotate(p['weights'], (p['click_auc'], p['conversion_auc']), fontsize='x-small',
                          textcoords='offset points', xytext=(4, 3), color=colour)
    front = sorted((p['click_auc'], p['conversion_auc']) for p in points if p['pareto'])
    axes.plot(*zip(*front), color='black', linewidth=1, linestyle='--', zorder=2,
              label='Pareto front (filled points)')
    axes.set(xlabel='click AUC', ylabel='conversion AUC',
             title='Pareto front: click vs conversion AUC')
    axes.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize='small')
    return figure
