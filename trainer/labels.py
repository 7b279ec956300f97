"""Labels and sample weights per model output, for tf.data pipelines and Model.fit."""

from typing import Dict, Tuple

import tensorflow as tf

from trainer import features


def labels_for_loss(labels: Dict[str, tf.Tensor]) -> Tuple[Dict[str, tf.Tensor],
                                                           Dict[str, tf.Tensor]]:
    """Maps a batch's label columns to (labels, sample weights) per model output, for any loss.

    Every output gets its label; Keras ignores those of outputs the loss leaves out. p_cvr is
    p(conversion | click), observed on clicked impressions only, so its sample weight is the
    click divided by the batch's click rate: its loss (the naive loss) is then the mean over the
    clicked impressions, as if trained on them alone, not that mean shrunk by the click rate.
    """
    click = tf.cast(labels[features.CLICK_LABEL], tf.float32)
    return ({output: labels[features.OUTPUT_LABELS[output]] for output in features.OUTPUTS},
            {features.P_CVR: tf.math.divide_no_nan(click, tf.reduce_mean(click))})


def split_labels(batch: Dict[str, tf.Tensor]) -> Tuple[Dict, Dict, Dict]:
    """A batch of transformed columns -> (model inputs, labels, sample weights) for Model.fit."""
    labels = {name: batch.pop(name) for name in features.LABELS}
    return (batch, *labels_for_loss(labels))
