"""Warm start: initialise a new model from the latest blessed model where the weights still fit.

Daily retraining on a rolling window changes the vocabularies a little every day (new ids, a
new frequency order), so copying embedding tables row for row would give ids the vectors of
other ids. Embedding rows are copied by id instead: an id in both vocabularies keeps its vector,
a new id starts fresh, and the OOV buckets keep theirs. Other layers are copied when their
shapes match. Anything that does not fit starts fresh, and the log says why.
"""

import logging
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft


def _vocabulary(path: str) -> List[bytes]:
    with tf.io.gfile.GFile(path, 'rb') as f:
        return [line.rstrip(b'\n') for line in f]


def _row_map(old_vocab: List[bytes], new_vocab: List[bytes], old_rows: int,
             new_rows: int) -> np.ndarray:
    """For each row of the new embedding table, the row of the old table holding the same id
    (or the same OOV bucket), else -1."""
    old_index = {token: i for i, token in enumerate(old_vocab)}
    rows = np.full(new_rows, -1)
    rows[:len(new_vocab)] = [old_index.get(token, -1) for token in new_vocab]
    buckets = min(old_rows - len(old_vocab), new_rows - len(new_vocab))
    rows[len(new_vocab):len(new_vocab) + buckets] = np.arange(buckets) + len(old_vocab)
    return rows


def _input_name(layer: tf.keras.layers.Layer) -> str:
    """The model input an embedding layer looks up."""
    return layer.inbound_nodes[0].inbound_layers.name


def from_base_model(model: tf.keras.Model, base_model_dir: Optional[str],
                    tft_output: tft.TFTransformOutput) -> Dict[str, int]:
    """Copies what fits from the SavedModel in `base_model_dir` into `model`.

    Returns counts of layers copied, embedding tables remapped by id and layers left fresh.
    """
    counts = {'copied': 0, 'remapped': 0, 'fresh': 0}
    if not base_model_dir:
        logging.info('Warm start: no blessed model yet; training from scratch.')
        return counts
    base = tf.keras.models.load_model(base_model_dir, compile=False)
    if sorted(base.input_names) != sorted(model.input_names):
        logging.warning('Warm start: the blessed model in %s has other inputs (%s vs %s: the '
                        'feature spec changed); training from scratch.', base_model_dir,
                        sorted(base.input_names), sorted(model.input_names))
        return counts
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            old = base.get_layer(layer.name)
        except ValueError:
            old = None
        old_weights, new_weights = (old.get_weights() if old else []), layer.get_weights()
        old_vocab_path = os.path.join(base_model_dir, 'assets', _input_name(layer))
        if (isinstance(layer, tf.keras.layers.Embedding) and old_weights
                and tf.io.gfile.exists(old_vocab_path)):
            rows = _row_map(_vocabulary(old_vocab_path),
                            _vocabulary(tft_output.vocabulary_file_by_name(_input_name(layer))),
                            len(old_weights[0]), len(new_weights[0]))
            table = new_weights[0]
            table[rows >= 0] = old_weights[0][rows[rows >= 0]]
            layer.set_weights([table])
            counts['remapped'] += 1
            logging.info('Warm start: %s: %d of %d rows from the blessed model.', layer.name,
                         int((rows >= 0).sum()), len(rows))
        elif [w.shape for w in old_weights] == [w.shape for w in new_weights]:
            layer.set_weights(old_weights)
            counts['copied'] += 1
        else:
            counts['fresh'] += 1
            logging.warning('Warm start: layer %s does not fit the blessed model (%s); it starts '
                            'fresh.', layer.name, 'absent' if old is None else 'other shapes')
    logging.info('Warm start from %s: %d layers copied, %d embedding tables remapped by id, '
                 '%d fresh.', base_model_dir, counts['copied'], counts['remapped'],
                 counts['fresh'])
    return counts
