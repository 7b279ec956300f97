"""Training schedules: which task losses train the model at each step (config.schedule).

- 'joint' (the default): both losses at every step; a plain Keras model, nothing here.
- 'alternating': the click task's loss on even steps, the conversion task's on odd steps.
- 'curriculum': the click task's loss alone for curriculum_click_steps, then the conversion
  task's loss phased in, its weight rising linearly from 0 to 1 over curriculum_ramp_steps.

Only training follows the schedule: evaluation, and so early stopping's val_loss, always uses
the joint loss, so that validations at different steps compare.
"""

from typing import Dict, Sequence

import tensorflow as tf

from trainer.task_weighting import FunnelModel, scaled_sample_weights


@tf.keras.utils.register_keras_serializable(package='funnel')
class ScheduledModel(FunnelModel):
    """A functional model whose training step weights each task's loss by its schedule's
    multiplier for the current step (0 leaves the task out). The multipliers scale the task
    outputs' sample weights, so Keras' compiled loss, metrics and tf.distribute loss scaling
    stay Keras' own."""

    SETTINGS = ('task_outputs', 'schedule', 'click_steps', 'ramp_steps')

    def __init__(self, inputs, outputs, task_outputs: Sequence[str], schedule: str,
                 click_steps: int, ramp_steps: int, name=None):
        super().__init__(inputs, outputs, task_outputs, name=name)
        if schedule not in ('alternating', 'curriculum'):
            raise ValueError(f"Unknown training schedule {schedule!r}: 'alternating' or "
                             "'curriculum' ('joint' needs no ScheduledModel).")
        self.schedule = schedule
        self.click_steps = click_steps
        self.ramp_steps = ramp_steps

    def multipliers(self, step) -> Dict[str, tf.Tensor]:
        """Per task output (click task first), the weight of its loss at training step `step`."""
        click, conversion = self.task_outputs
        step = tf.cast(step, tf.float32)
        if self.schedule == 'alternating':
            on_click = tf.cast(tf.math.floormod(step, 2.0) == 0.0, tf.float32)
            return {click: on_click, conversion: 1.0 - on_click}
        return {click: tf.constant(1.0),
                conversion: tf.clip_by_value((step - self.click_steps) / self.ramp_steps,
                                             0.0, 1.0)}

    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        scaled = scaled_sample_weights(sample_weight, self.multipliers(self.optimizer.iterations))
        return super().train_step(tf.keras.utils.pack_x_y_sample_weight(x, y, scaled))
