"""The quality benchmark's multi-task analyses (bench/quality.py runs the models):

- Transfer gain: what sharing parameters brings each task. A multi-task system's AUC minus the
  AUC of the single-task system with the same loss (two networks sharing no parameter), seed by
  seed (same data, budget and seed), then mean ± std over the seeds.
- Pareto front of click AUC against conversion AUC over task-weight settings (the static
  click_loss_weight : conversion_loss_weight ratio) and systems: the points no other point beats
  on both tasks, for a team to pick the trade-off it wants. Written as a markdown table and as
  JSON (`pareto.json` beside the markdown), which the HTML report plots.

A size result is quality.run_size's: {'rows', 'results': {system: [scores per seed]},
'sweep': {system: {weights label: [scores per seed]}}, ...}.
"""

import json
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

# (task, score column) of the transfer gain: the three tasks the pipeline judges.
GAIN_TASKS = (('click', 'click AUC'), ('conversion', 'conversion AUC'),
              ('CVR on clicked', 'CVR on clicked AUC'))
PARETO_AXES = {'click_auc': 'click AUC', 'conversion_auc': 'conversion AUC'}  # JSON key: score
EQUAL_WEIGHTS = '1:1'


def parse_weights(text: str) -> Dict[str, Tuple[float, float]]:
    """'4:1,1:2' -> {'4:1': (1.6, 0.4), '1:2': (0.667, 1.333)}: click:conversion ratios, the two
    weights scaled to sum to 2 as the default 1:1 does, so that only the ratio changes (the
    embedding L2 keeps its relative weight)."""
    weights = {}
    for ratio in filter(None, text.split(',')):
        click, conversion = (float(part) for part in ratio.split(':'))
        if click <= 0 or conversion <= 0:
            raise ValueError(f'loss weights {ratio!r}: both parts must be > 0')
        weights[ratio] = (2 * click / (click + conversion), 2 * conversion / (click + conversion))
    return weights


def transfer_gains(results: Mapping[str, List[dict]],
                   baselines: Mapping[str, str]) -> Dict[str, Dict[str, List[float]]]:
    """Per multi-task system with a baseline, per task, the AUC gains over its single-task
    baseline, one per seed both ran (paired by seed). `baselines`: system -> baseline system."""
    gains = {}
    for system, baseline in baselines.items():
        if system in results and baseline in results and system != baseline:
            pairs = list(zip(results[system], results[baseline]))
            gains[system] = {task: [ours[column] - theirs[column] for ours, theirs in pairs]
                             for task, column in GAIN_TASKS}
    return gains


def _signed(values: Sequence[float]) -> str:
    text = f'{np.mean(values):+.4f}'
    return text + (f' ± {np.std(values):.4f}' if len(values) > 1 else '')


def transfer_table(gains: Mapping[str, Dict[str, List[float]]],
                   baselines: Mapping[str, str]) -> List[str]:
    lines = ['| system | single-task baseline | seeds | ' + ' | '.join(
        f'{task} AUC gain' for task, _ in GAIN_TASKS) + ' |', '|---' * (3 + len(GAIN_TASKS)) + '|']
    for system, per_task in gains.items():
        seeds = len(next(iter(per_task.values())))
        lines.append(f'| {system} | {baselines[system]} | {seeds} | ' + ' | '.join(
            _signed(per_task[task]) for task, _ in GAIN_TASKS) + ' |')
    return lines


def non_dominated(points: Sequence[Tuple[float, float]]) -> List[bool]:
    """For each (click AUC, conversion AUC) point: True when no other point is at least as good
    on both and better on one (the Pareto front; equal points are all on it)."""
    return [not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points) for p in points]


def pareto_points(size: dict, learnt: Mapping[str, str], seeds: int) -> List[dict]:
    """Every system's point (mean over its first `seeds` seeds) at equal weights, or at its own
    learnt weights (`learnt`: system -> weighting), plus the swept weight settings; each marked
    `pareto` when it is on the front."""
    runs = {(system, learnt.get(system, EQUAL_WEIGHTS)): scores[:seeds]
            for system, scores in size['results'].items()}
    for system, settings in size.get('sweep', {}).items():
        runs.update({(system, weights): scores for weights, scores in settings.items()})
    points = []
    for (system, weights), scores in runs.items():
        point = {'system': system, 'weights': weights, 'seeds': len(scores)}
        for key, column in PARETO_AXES.items():
            values = [score[column] for score in scores]
            point[key], point[key + '_std'] = float(np.mean(values)), float(np.std(values))
        points.append(point)
    front = non_dominated([(p['click_auc'], p['conversion_auc']) for p in points])
    for point, on_front in zip(points, front):
        point['pareto'] = on_front
    return sorted(points, key=lambda p: (-p['click_auc'], -p['conversion_auc']))


def pareto_table(points: Sequence[dict]) -> List[str]:
    lines = ['| system | click : conversion loss weights | seeds | click AUC | conversion AUC '
             '| on the front |', '|---' * 6 + '|']
    for p in points:
        cells = [f'{p[key]:.4f}' + (f' ± {p[key + "_std"]:.4f}' if p['seeds'] > 1 else '')
                 for key in PARETO_AXES]
        lines.append(f'| {p["system"]} | {p["weights"]} | {p["seeds"]} | {" | ".join(cells)} | '
                     f'{"**yes**" if p["pareto"] else ""} |')
    return lines


def write_pareto_json(path: str, points: Sequence[dict], about: Mapping[str, object]) -> None:
    """The points and how they were made (command, rows, epochs...), for the report's plot."""
    with open(path, 'w') as f:
        json.dump({**about, 'points': list(points)}, f, indent=1)
