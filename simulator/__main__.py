"""CLI: python -m simulator --rows N --seed S --out DIR; prints the summary JSON."""

import argparse
import json
import logging

from simulator.funnel import write_dataset


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog='python -m simulator',
        description='Write a simulated impression -> click -> conversion dataset '
                    '(examples/impressions.csv, truth/truth.csv, truth/summary.json).')
    parser.add_argument('--rows', type=int, default=100_000,
                        help='impressions to draw (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    parser.add_argument('--out', required=True, help='output directory')
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    try:
        summary = write_dataset(args.out, rows=args.rows, seed=args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(summary, indent=2))


if __name__ == '__main__':
    main()
