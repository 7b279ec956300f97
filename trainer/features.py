"""The declared feature spec: which raw columns are ids, dense values and labels.

Users describe their impression logs in one small YAML file (the simulator's is
simulator/feature_spec.yaml); the Transform, the model inputs, the serving signatures and the
Evaluator's label keys and slices all follow from it. Everything else here is fixed by the
model: its output names, its serving signatures and the transformed names of the labels.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import yaml

# Transformed label names: the Transform renames the spec's label columns to these, so that the
# trainer and its losses do not depend on how a data source names its labels.
CLICK_LABEL = 'click'
CONVERSION_LABEL = 'conversion'
LABELS = (CLICK_LABEL, CONVERSION_LABEL)

# Model outputs, named for serving and for TFMA.
P_CLICK = 'p_click'            # p(click | impression)
P_CVR = 'p_cvr'                # p(conversion | click, impression)
P_CONVERSION = 'p_conversion'  # p(click and conversion | impression) = p_click * p_cvr
OUTPUTS = (P_CLICK, P_CVR, P_CONVERSION)

# Which transformed label each output predicts. p_cvr is scored against conversions on clicked
# impressions only (a click = 1 slice in TFMA, sample weights in training).
OUTPUT_LABELS = {P_CLICK: CLICK_LABEL, P_CONVERSION: CONVERSION_LABEL, P_CVR: CONVERSION_LABEL}

# Serving signatures of the exported model (trainer/export.py), named for TF Serving clients.
DEFAULT_SIGNATURE = 'serving_default'  # serialized tf.Examples under the input key EXAMPLES_INPUT
EXAMPLES_INPUT = 'examples'
RAW_SIGNATURE = 'serving_raw'          # one named tensor per raw feature

MISSING_SUFFIX = '_missing'

# Entities a feature may belong to (the spec's optional `entity` key): the model's
# entity-specific experts (model.entity_experts) see only their side's features, as the towers
# of a two-tower model do. Unmarked features (the context: device, position) go to the shared
# experts only.
ENTITIES = ('user', 'item')

# What a blank cell of an id column means (the spec's optional `blank` key): `stop` (the default)
# stops the run at the input check (pipeline/inputs.py) naming the lines; `oov` reads it as an
# unknown id (an out-of-vocabulary bucket, as an id never seen in training), as in production
# logs where e.g. the device is sometimes unknown; the schema then lets the column be missing.
BLANK_STOP, BLANK_OOV = 'stop', 'oov'
BLANK_OPTIONS = (BLANK_STOP, BLANK_OOV)


def missing_indicator_name(feature: str) -> str:
    """Name of the 0/1 feature that tells the model a dense value was imputed."""
    return feature + MISSING_SUFFIX


class FeatureSpecError(ValueError):
    """The feature spec is malformed; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    """An id column: becomes a vocabulary id, then an embedding."""
    name: str
    embedding_dim: Optional[int] = None        # default: min(max_embedding_dim, 6 * size**0.25)
    top_k: Optional[int] = None                # default: vocabulary.top_k of the pipeline config
    frequency_threshold: Optional[int] = None  # default: vocabulary.frequency_threshold
    entity: Optional[str] = None               # one of ENTITIES, or None (context)
    blank: str = BLANK_STOP                    # what a blank cell means: one of BLANK_OPTIONS


@dataclasses.dataclass(frozen=True)
class DenseFeature:
    """A numeric column: z-scored (after log1p if `log`); missing values imputed and flagged."""
    name: str
    log: bool = False                          # for heavy-tailed, non-negative values
    entity: Optional[str] = None               # one of ENTITIES, or None (context)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The raw columns of the impression logs and their roles."""
    categorical: Tuple[CategoricalFeature, ...]
    dense: Tuple[DenseFeature, ...]
    click_label: str
    conversion_label: str
    slices: Tuple[str, ...] = ()               # categorical columns the Evaluator slices by

    @property
    def categorical_names(self) -> Tuple[str, ...]:
        return tuple(feature.name for feature in self.categorical)

    @property
    def dense_names(self) -> Tuple[str, ...]:
        return tuple(feature.name for feature in self.dense)

    @property
    def label_columns(self) -> Tuple[str, str]:
        """The raw (click, conversion) label columns."""
        return self.click_label, self.conversion_label

    @property
    def columns(self) -> Tuple[str, ...]:
        """Every raw column the spec names: ids, dense values, labels."""
        return (*self.categorical_names, *self.dense_names, *self.label_columns)

    @property
    def blank_ids(self) -> Dict[str, str]:
        """Id column -> what a blank cell in it means (BLANK_OPTIONS)."""
        return {feature.name: feature.blank for feature in self.categorical}

    @property
    def embedding_dims(self) -> Dict[str, int]:
        """The embedding sizes the spec sets; the model picks the others."""
        return {f.name: f.embedding_dim for f in self.categorical if f.embedding_dim}

    @property
    def input_entities(self) -> Dict[str, str]:
        """Model input name -> entity, for the features the spec marks; a dense column's
        missing indicator belongs to its column's entity."""
        marked = {feature.name: feature.entity for feature in (*self.categorical, *self.dense)
                  if feature.entity}
        marked.update({missing_indicator_name(feature.name): feature.entity
                       for feature in self.dense if feature.entity})
        return marked

    @property
    def raw_labels(self) -> Dict[str, str]:
        """Transformed label name -> raw label column."""
        return {CLICK_LABEL: self.click_label, CONVERSION_LABEL: self.conversion_label}

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form passed to the Transform and the Trainer in their custom_config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> 'FeatureSpec':
        return cls(categorical=tuple(CategoricalFeature(**f) for f in values['categorical']),
                   dense=tuple(DenseFeature(**f) for f in values['dense']),
                   click_label=values['click_label'],
                   conversion_label=values['conversion_label'],
                   slices=tuple(values.get('slices', ())))


def load_feature_spec(path: str) -> FeatureSpec:
    """Reads and validates a YAML feature spec; raises FeatureSpecError naming the problem."""
    try:
        with open(path) as f:
            document = yaml.safe_load(f)
    except OSError as e:
        raise FeatureSpecError(f'Feature spec {path} cannot be read: {e.strerror}.') from None
    except yaml.YAMLError as e:
        raise FeatureSpecError(f'Feature spec {path} is not valid YAML: {e}') from None
    return parse_feature_spec(document, source=path)


def parse_feature_spec(document: Any, source: str = '<feature spec>') -> FeatureSpec:
    """Builds a FeatureSpec from the YAML document (see simulator/feature_spec.yaml)."""
    def fail(problem: str):
        raise FeatureSpecError(f'Feature spec {source}: {problem}')

    if not isinstance(document, dict):
        fail('expected a mapping with the keys labels, categorical, dense and slices.')
    _check_keys(document, {'labels', 'categorical', 'dense', 'slices'},
                {'labels', 'categorical', 'dense'}, 'the top level', fail)
    labels = document['labels']
    if not isinstance(labels, dict):
        fail('labels must be a mapping {click: <column>, conversion: <column>}.')
    _check_keys(labels, {'click', 'conversion'}, {'click', 'conversion'}, 'labels', fail)
    categorical = tuple(_column(entry, CategoricalFeature, 'categorical', fail)
                        for entry in _list(document, 'categorical', fail))
    dense = tuple(_column(entry, DenseFeature, 'dense', fail)
                  for entry in _list(document, 'dense', fail))
    spec = FeatureSpec(categorical=categorical, dense=dense,
                       click_label=_name(labels['click'], 'labels.click', fail),
                       conversion_label=_name(labels['conversion'], 'labels.conversion', fail),
                       slices=tuple(_name(s, 'slices', fail)
                                    for s in document.get('slices') or ()))
    _check_roles(spec, fail)
    return spec


def _check_keys(mapping: dict, allowed: set, required: set, where: str, fail):
    unknown, missing = set(mapping) - allowed, required - set(mapping)
    if unknown:
        fail(f'unknown key(s) {sorted(unknown)} in {where}; allowed: {sorted(allowed)}.')
    if missing:
        fail(f'missing key(s) {sorted(missing)} in {where}.')


def _list(document: dict, key: str, fail) -> list:
    entries = document[key] or []
    if not isinstance(entries, list):
        fail(f'{key} must be a list of column names or {{name: ..., option: ...}} entries.')
    return entries


def _name(value: Any, where: str, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        fail(f'{where}: {value!r} is not a column name.')
    return value


def _column(entry: Any, cls, section: str, fail):
    """One `- name` or `- {name: ..., option: ...}` entry of the categorical or dense list."""
    if isinstance(entry, str):
        entry = {'name': entry}
    if not isinstance(entry, dict):
        fail(f'{section}: {entry!r} is neither a column name nor a mapping with a name.')
    fields = {field.name: field for field in dataclasses.fields(cls)}
    _check_keys(entry, set(fields), {'name'}, f'{section} entry {entry.get("name", entry)!r}',
                fail)
    name = _name(entry['name'], section, fail)
    for key, value in entry.items():
        if key == 'name':
            continue
        if key == 'entity':
            if value not in ENTITIES:
                fail(f'{section} column {name!r}: entity={value!r} must be one of '
                     f'{", ".join(ENTITIES)} (leave it out for a context feature).')
            continue
        if key == 'blank':
            if value not in BLANK_OPTIONS:
                fail(f'{section} column {name!r}: blank={value!r} must be {BLANK_STOP} (a '
                     f'blank id stops the run, the default) or {BLANK_OOV} (a blank id is an '
                     'unknown id).')
            continue
        expected = bool if fields[key].type is bool else int
        if type(value) is not expected or (expected is int and value < 1):
            fail(f'{section} column {name!r}: {key}={value!r} must be '
                 f'{"true or false" if expected is bool else "a positive integer"}.')
    return cls(**entry)


def _check_roles(spec: FeatureSpec, fail):
    """Each column has one role; transformed names do not collide; slices are id columns."""
    if not spec.categorical and not spec.dense:
        fail('no features: list at least one categorical or dense column.')
    seen = {}
    for role, names in (('label', spec.label_columns),
                        ('categorical', spec.categorical_names), ('dense', spec.dense_names)):
        for name in names:
            if name in seen:
                what = ('a label listed as a feature' if 'label' in (seen[name], role)
                        else 'a duplicate name')
                fail(f'column {name!r} is both {seen[name]} and {role} ({what}); '
                     'give each column one role.')
            seen[name] = role
    features = set(spec.categorical_names) | set(spec.dense_names)
    reserved = set(LABELS) | {missing_indicator_name(name) for name in spec.dense_names}
    for name in sorted(features & reserved):
        fail(f'feature {name!r} collides with a name the Transform produces '
             f'({sorted(reserved)}); rename the column.')
    for name in spec.slices:
        if name not in spec.categorical_names:
            fail(f'slice {name!r} is not a categorical column; slices must be listed under '
                 'categorical.')


def entity_inputs(input_entities: Mapping[str, str], inputs: Sequence[str],
                  source: str = '<feature spec>') -> Dict[str, Tuple[str, ...]]:
    """Per entity, the model inputs of its side (in the order of `inputs`), for
    entity-specific experts and the user x item product; raises FeatureSpecError when a side
    has none."""
    sides = {entity: tuple(name for name in inputs if input_entities.get(name) == entity)
             for entity in ENTITIES}
    empty = [entity for entity, names in sides.items() if not names]
    if empty:
        raise FeatureSpecError(
            f'Feature spec {source}: entity-specific experts (model.entity_experts > 0) and the '
            "user x item product (model.user_item_interaction='product') need features of "
            f'every side, but no column is marked entity: {" or ".join(empty)}; mark the '
            'columns in the spec or set FUNNEL_MODEL_ENTITY_EXPERTS=0 and '
            'FUNNEL_MODEL_USER_ITEM_INTERACTION=none.')
    return sides
