"""Where ExampleGen, StatisticsGen and Transform spend their time, and proof that a faster
version writes the same outputs.

    python -m bench.ingest_cost --data DIR [--profile 30]
    python -m bench.ingest_cost --data DIR --code before=/tmp/before,now=. [--rounds 2]

Each component is the pipeline's own executor (as pipeline/graph.py configures it) run in a
fresh child process on the CSV files of --data: CsvExampleGen (with the input check), then
StatisticsGen and Transform on its examples. --code names checkouts of the project to compare
(e.g. `git archive main | tar -x -C /tmp/before`); each child runs in its checkout, the rounds
alternate between them so that machine load hits them alike. For every checkout after the first
the table says whether its outputs equal the first's: each split's tf.Examples (as sets of
parsed examples), each split's statistics (protos, feature order aside), the transformed
examples (as sets) and the Transform's vocabularies.
"""

import argparse
import json
import logging
import os
import resource
import sys
from typing import Dict, List

from bench import results_file
from bench.speed import timed_process

COMPONENTS = ('CsvExampleGen', 'StatisticsGen', 'Transform')
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ingest_component.py')


def _cpu_seconds() -> float:
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def run_child(code: str, component: str, data: str, out: str, beam_args: str,
              profile: int) -> Dict[str, float]:
    """One component in a child process of checkout `code`: wall s, CPU s, peak GB. Its output
    (the profile) goes to this process's."""
    args = [sys.executable, CHILD, component, '--data', data,
            '--out', out, '--profile', str(profile)]
    if beam_args:
        args += ['--beam-args', beam_args]
    env = {'TF_USE_LEGACY_KERAS': '1', 'PYTHONPATH': os.path.abspath(code)}
    cpu = _cpu_seconds()
    run = timed_process(args, env, log_path=None, cwd=code)
    return {'wall': run['seconds'], 'cpu': _cpu_seconds() - cpu, 'gb': run['peak_gb']}


def same_outputs(reference: str, other: str, components: List[str]) -> Dict[str, str]:
    """'same' or what differs, per component run, between two runs' output folders."""
    from bench import ingest_outputs
    return {component: ingest_outputs.difference(component, reference, other) or 'same'
            for component in components}


def main():
    results_file.configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', required=True, help='a folder of CSV files')
    parser.add_argument('--out', default='/tmp/ingest_cost', help='work folder')
    parser.add_argument('--code', default='now=.',
                        help='name=checkout,...: the project checkouts to compare')
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--components', default=','.join(COMPONENTS))
    parser.add_argument('--beam-args', default='',
                        help="comma-separated Beam args for every component (default: the "
                             "pipeline's)")
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='profile each component (first round) and print its N costliest '
                             'functions')
    args = parser.parse_args()
    codes = dict(item.split('=', 1) for item in args.code.split(','))
    components = args.components.split(',')
    seconds: Dict[str, Dict[str, List[Dict[str, float]]]] = {
        name: {c: [] for c in components} for name in codes}
    for round_ in range(args.rounds):
        for name, code in codes.items():
            out = os.path.join(args.out, name)
            for component in components:
                run = run_child(code, component, args.data, out, args.beam_args,
                                args.profile if not round_ else 0)
                seconds[name][component].append(run)
                logging.info('%s %s: %.1f s, %.1f CPU s, %.2f GB', name, component,
                             run['wall'], run['cpu'], run['gb'])
    names = list(codes)
    lines = [f'Components on {args.data}, {args.rounds} round(s), Beam args '
             f'{args.beam_args or "the pipeline default"}; load average '
             f'{os.getloadavg()[0]:.1f} at the end', '',
             '| checkout | component | wall s per round | CPU s per round | peak GB | '
             f'outputs as {names[0]} |', '|---' * 6 + '|']
    for name in names:
        same = (same_outputs(os.path.join(args.out, names[0]), os.path.join(args.out, name),
                             components)
                if name != names[0] else {})
        for component in components:
            runs = seconds[name][component]
            lines.append(f'| {name} | {component} | '
                         + ' / '.join(f'{r["wall"]:.1f}' for r in runs) + ' | '
                         + ' / '.join(f'{r["cpu"]:.1f}' for r in runs) + ' | '
                         + f'{max(r["gb"] for r in runs):.2f} | {same.get(component, "-")} |')
    print('\n'.join(lines))
    json.dump(seconds, open(os.path.join(args.out, 'seconds.json'), 'w'), indent=1)


if __name__ == '__main__':
    main()
