"""Names of the raw columns and what role each plays.

The only place that knows the data's columns: the Transform, the model inputs, the serving
signatures and the Evaluator's label keys all follow from these tuples.
"""

# Categorical ids: each becomes a vocabulary id and then an embedding.
CATEGORICAL_FEATURES = ('user_id', 'item_id', 'item_category', 'device', 'ad_position')

# Dense numeric features: z-scored; the heavy-tailed ones go through log1p first.
DENSE_FEATURES = ('price', 'user_activity', 'item_hist_ctr', 'user_age')
LOG_DENSE_FEATURES = ('price', 'user_activity')

# Funnel labels: a conversion can only follow a click.
CLICK_LABEL = 'click'
CONVERSION_LABEL = 'conversion'
LABELS = (CLICK_LABEL, CONVERSION_LABEL)

# Model outputs, named for serving and for TFMA.
P_CLICK = 'p_click'            # p(click | impression)
P_CVR = 'p_cvr'                # p(conversion | click, impression)
P_CONVERSION = 'p_conversion'  # p(click and conversion | impression) = p_click * p_cvr
OUTPUTS = (P_CLICK, P_CVR, P_CONVERSION)

# Which label each output predicts (TFMA label keys). p_cvr is scored against conversions
# on clicked impressions only, by slicing the evaluation on click = 1.
OUTPUT_LABELS = {P_CLICK: CLICK_LABEL, P_CONVERSION: CONVERSION_LABEL, P_CVR: CONVERSION_LABEL}

# Serving signatures of the exported model (trainer/export.py), named for TF Serving clients.
DEFAULT_SIGNATURE = 'serving_default'  # serialized tf.Examples under the input key EXAMPLES_INPUT
EXAMPLES_INPUT = 'examples'
RAW_SIGNATURE = 'serving_raw'          # one named tensor per raw feature

MISSING_SUFFIX = '_missing'


def missing_indicator_name(feature: str) -> str:
    """Name of the 0/1 feature that tells the model a dense value was imputed."""
    return feature + MISSING_SUFFIX
