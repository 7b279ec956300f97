#!/usr/bin/env bash
# Back-to-back training speed of the project's MMoE + ESMM and DeepCTR's MMOE, alternating
# (one epoch of the 1M-row benchmark data each, ROUNDS times), to tell model speed from machine
# load when the machine is shared. Needs `make bench-quality` (or its data) first.
set -euo pipefail
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
DATA=${DATA:-data/bench/simulated-1000000-seed0}
for round in $(seq "${ROUNDS:-2}"); do
  .venv/bin/python -c "
import dataclasses
from bench import quality
from pipeline.config import load_config
config = dataclasses.replace(load_config().model, seed=0)
print('project MMoE + ESMM', int(quality.train_project(config, '$DATA', 1)['examples_per_s']))
print('DeepCTR MMOE', int(quality.train_deepctr(['DeepCTR MMOE'], config, 1, '$DATA', 1)[
    'DeepCTR MMOE'][0]['examples_per_s']))" 2>/dev/null | grep -E '^(project|DeepCTR)'
done
