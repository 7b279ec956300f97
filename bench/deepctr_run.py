"""Trains DeepCTR's multitask models on a benchmark data set; runs in DeepCTR's own venv.

    .bench-venv/deepctr/bin/python -m bench.deepctr_run --data DIR --models MMOE,ESMM,PLE \
        --seeds 0,1,2 --epochs 2 --config '{"batch_size": 1024, ...}' --out-dir OUT

Reads the transformed arrays of bench/data.py (the same inputs and split as the project's models)
and writes, per model and seed, OUT/<model>-seed<seed>.npz: the held-out predictions p_click,
p_cvr, p_conversion and the training examples/s. One process trains them all, one after the
other, so that TensorFlow's start-up is paid once.
DeepCTR's models predict click and conversion (= click and conversion, on all impressions);
p_cvr is their ratio (for ESMM exactly its CVR tower, since its conversion output is ctr * cvr).
Sizes, learning rate, batch size and embedding L2 come from the project's ModelConfig (--config),
so both systems get the same capacity and budget.
"""

import argparse
import json
import os

import numpy as np
import tensorflow as tf
from deepctr.feature_column import DenseFeat, SparseFeat
from deepctr.models.multitask import ESMM, MMOE, PLE

from bench import shared
from trainer import in_memory

MODELS = ('MMOE', 'ESMM', 'PLE')


def build(name: str, inputs: dict, config: dict, seed: int) -> tf.keras.Model:
    columns = [SparseFeat(feature, size, embedding_dim=inputs['embedding_dims'][feature])
               for feature, size in inputs['vocab_sizes'].items()]
    columns += [DenseFeat(feature, 1) for feature in inputs['dense']]
    common = dict(l2_reg_embedding=config['embedding_l2'], seed=seed,
                  task_names=tuple(inputs['labels']))  # click, conversion
    experts, towers = tuple(config['expert_units']), tuple(config['tower_units'])
    if name == 'MMOE':
        return MMOE(columns, num_experts=config['num_experts'], expert_dnn_hidden_units=experts,
                    tower_dnn_hidden_units=towers, **common)
    if name == 'PLE':
        return PLE(columns, shared_expert_num=config['shared_experts'],
                   specific_expert_num=config['experts_per_task'], num_levels=config['ple_levels'],
                   expert_dnn_hidden_units=experts, tower_dnn_hidden_units=towers, **common)
    if name == 'ESMM':  # no shared body: each tower is an expert plus a tower of the project's
        return ESMM(columns, tower_dnn_hidden_units=experts + towers, **common)
    raise ValueError(f'Unknown DeepCTR model {name!r}; one of {MODELS}.')


def train(name: str, inputs: dict, config: dict, seed: int, epochs: int, data_dir: str,
          out: str) -> None:
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    model = build(name, inputs, config, seed)
    model.compile(tf.keras.optimizers.Adam(config['learning_rate']),
                  loss={task: 'binary_crossentropy' for task in inputs['labels']})
    batches = in_memory.epoch_batches(shared.load(data_dir, 'train'), config['batch_size'],
                                   seed).map(
        lambda batch: ({name: batch[name] for name in model.input_names},
                       {task: batch[task] for task in inputs['labels']}))
    examples_per_s = shared.fit(model, batches, epochs, config['batch_size'])
    p_click, p_conversion = (p.reshape(-1) for p in shared.predict(
        model, shared.load(data_dir, 'test')))
    np.savez(out, p_click=p_click, p_conversion=p_conversion,
             p_cvr=np.clip(p_conversion / np.maximum(p_click, 1e-12), 0.0, 1.0),
             examples_per_s=examples_per_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', required=True)
    parser.add_argument('--models', required=True, help=f'comma-separated, of {MODELS}')
    parser.add_argument('--seeds', required=True, help='comma-separated')
    parser.add_argument('--epochs', type=int, required=True)
    parser.add_argument('--config', required=True, help='the ModelConfig fields, as JSON')
    parser.add_argument('--out-dir', required=True)
    args = parser.parse_args()
    config = json.loads(args.config)
    with open(os.path.join(args.data, 'inputs.json')) as f:
        inputs = json.load(f)
    for seed in map(int, args.seeds.split(',')):
        for name in args.models.split(','):
            train(name, inputs, config, seed, args.epochs, args.data,
                  os.path.join(args.out_dir, f'{name}-seed{seed}.npz'))


if __name__ == '__main__':
    main()
