"""Funnel simulator: impressions -> clicks -> conversions from known probabilities.

Because every label is drawn from a probability we compute ourselves, the best
AUC any model could reach (the Bayes AUC) is known, which lets the pipeline's
models be scored against a ceiling rather than in a vacuum.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import numbers
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.metrics import roc_auc_score

logger = logging.getLogger(__name__)

# --- Id universes -----------------------------------------------------------
N_USERS = 20_000
N_ITEMS = 5_000
N_CATEGORIES = 40
ZIPF_EXPONENT = 1.1
ZIPF_OFFSET = 10  # Zipf-Mandelbrot offset: long tail without one id owning 15 % of rows.

# --- Target rates -------------------------------------------------------------
TARGET_CLICK_RATE = 0.045
TARGET_CVR_AMONG_CLICKS = 0.07
TARGET_MISSING_HIST_SHARE = 0.20  # share of rows whose item has no CTR history
CALIBRATION_ROWS = 200_000  # rows drawn once per seed to solve the intercepts

# --- Feature distributions ----------------------------------------------------
DEVICES = np.array(['mobile', 'desktop', 'tablet'], dtype=object)
DEVICE_PROBS = np.array([0.62, 0.30, 0.08])
POSITION_PROBS = np.array([0.24, 0.20, 0.17, 0.15, 0.13, 0.11])  # slots 1..6
PRICE_LOG_MEAN, PRICE_LOG_SIGMA = 3.0, 1.0  # per-item list price (~$20 median)
PRICE_ROW_SIGMA = 0.15  # per-impression discounts / surcharges
ACTIVITY_LOG_MEAN, ACTIVITY_LOG_SIGMA = 1.0, 1.0  # per-user Poisson rate
AGE_MEAN, AGE_SD, AGE_MIN, AGE_MAX = 38.0, 13.0, 18.0, 80.0
HIST_IMPRESSIONS_LOG_MEAN, HIST_IMPRESSIONS_LOG_SIGMA = np.log(300.0), 1.0

# --- Logit structure ------------------------------------------------------------
SHARED_LATENT_DIM, SHARED_AFFINITY_SD = 8, 0.9  # user x item, enters both tasks
CVR_LATENT_DIM, CVR_AFFINITY_SD = 4, 0.7  # user x item, conversion only
SHARED_AFFINITY_IN_CVR = 0.6
ITEM_BIAS_SD, CATEGORY_BIAS_SD, CATEGORY_AGE_SLOPE_SD = 0.5, 0.4, 0.4
POSITION_EFFECT = np.array([0.0, -0.35, -0.6, -0.8, -0.95, -1.05])  # click only
MOBILE_POSITION_MULTIPLIER = 1.4  # small screens punish low slots harder
DEVICE_CLICK_EFFECT = np.array([0.10, 0.0, -0.05])
DEVICE_CVR_EFFECT = np.array([-0.30, 0.25, 0.0])
ACTIVITY_CLICK_COEF, ACTIVITY_CVR_COEF = 0.25, 0.15
PRICE_CLICK_COEF, PRICE_CVR_COEF = -0.10, -0.70
PRICE_AGE_CVR_COEF = 0.25  # older users are less price sensitive

EXAMPLE_COLUMNS = [
    'user_id', 'item_id', 'item_category', 'device', 'ad_position', 'price',
    'user_activity', 'item_hist_ctr', 'user_age', 'click', 'conversion',
]
TRUTH_COLUMNS = ['p_click', 'p_cvr', 'p_conversion']


@dataclasses.dataclass(frozen=True)
class _Universe:
    """Everything fixed per seed: who the users and items are and how they behave."""

    user_probs: np.ndarray
    user_age: np.ndarray
    user_activity_rate: np.ndarray
    user_shared: np.ndarray
    user_cvr: np.ndarray
    item_probs: np.ndarray
    item_category: np.ndarray
    item_price: np.ndarray
    item_hist_ctr: np.ndarray  # NaN for items without history
    item_shared: np.ndarray
    item_cvr: np.ndarray
    item_click_bias: np.ndarray
    item_cvr_bias: np.ndarray
    category_click: np.ndarray
    category_cvr: np.ndarray
    category_age_click: np.ndarray
    category_age_cvr: np.ndarray


def _zipf_probs(n: int, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed frequencies, shuffled so an id's number says nothing about it."""
    weights = (np.arange(1, n + 1) + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    return rng.permutation(weights / weights.sum())


def _latent(n: int, dim: int, affinity_sd: float, rng: np.random.Generator) -> np.ndarray:
    """Vectors whose pairwise dot products have standard deviation `affinity_sd`."""
    return rng.normal(0.0, np.sqrt(affinity_sd / np.sqrt(dim)), size=(n, dim))


def _items_without_history(item_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New items: random non-head items that together get the target share of rows."""
    by_popularity = np.argsort(-item_probs)
    candidates = rng.permutation(by_popularity[len(item_probs) // 100:])
    return candidates[np.cumsum(item_probs[candidates]) <= TARGET_MISSING_HIST_SHARE]


def _draw_universe(rng: np.random.Generator) -> _Universe:
    item_category = rng.integers(0, N_CATEGORIES, size=N_ITEMS)
    category_click = rng.normal(0.0, CATEGORY_BIAS_SD, size=N_CATEGORIES)
    item_click_bias = rng.normal(0.0, ITEM_BIAS_SD, size=N_ITEMS)
    item_probs = _zipf_probs(N_ITEMS, rng)

    # Historical CTR: binomial estimate of the item's own click appeal.
    appeal = expit(np.log(TARGET_CLICK_RATE / (1 - TARGET_CLICK_RATE))
                   + item_click_bias + category_click[item_category])
    hist_impressions = np.ceil(rng.lognormal(HIST_IMPRESSIONS_LOG_MEAN,
                                             HIST_IMPRESSIONS_LOG_SIGMA, N_ITEMS))
    item_hist_ctr = np.round(rng.binomial(hist_impressions.astype(np.int64), appeal)
                             / hist_impressions, 4)
    item_hist_ctr[_items_without_history(item_probs, rng)] = np.nan

    return _Universe(
        user_probs=_zipf_probs(N_USERS, rng),
        user_age=np.round(np.clip(rng.normal(AGE_MEAN, AGE_SD, N_USERS), AGE_MIN, AGE_MAX), 1),
        user_activity_rate=rng.lognormal(ACTIVITY_LOG_MEAN, ACTIVITY_LOG_SIGMA, N_USERS),
        user_shared=_latent(N_USERS, SHARED_LATENT_DIM, SHARED_AFFINITY_SD, rng),
        user_cvr=_latent(N_USERS, CVR_LATENT_DIM, CVR_AFFINITY_SD, rng),
        item_probs=item_probs,
        item_category=item_category,
        item_price=rng.lognormal(PRICE_LOG_MEAN, PRICE_LOG_SIGMA, N_ITEMS),
        item_hist_ctr=item_hist_ctr,
        item_shared=_latent(N_ITEMS, SHARED_LATENT_DIM, SHARED_AFFINITY_SD, rng),
        item_cvr=_latent(N_ITEMS, CVR_LATENT_DIM, CVR_AFFINITY_SD, rng),
        item_click_bias=item_click_bias,
        item_cvr_bias=rng.normal(0.0, ITEM_BIAS_SD, size=N_ITEMS),
        category_click=category_click,
        category_cvr=rng.normal(0.0, CATEGORY_BIAS_SD, size=N_CATEGORIES),
        category_age_click=rng.normal(0.0, CATEGORY_AGE_SLOPE_SD, size=N_CATEGORIES),
        category_age_cvr=rng.normal(0.0, CATEGORY_AGE_SLOPE_SD, size=N_CATEGORIES),
    )


def _draw_impressions(u: _Universe, rows: int, rng: np.random.Generator) -> dict:
    """Draw feature values (as indices and numbers) for `rows` impressions."""
    user = rng.choice(N_USERS, size=rows, p=u.user_probs)
    item = rng.choice(N_ITEMS, size=rows, p=u.item_probs)
    price = np.round(u.item_price[item] * rng.lognormal(0.0, PRICE_ROW_SIGMA, rows), 2)
    return {
        'user': user,
        'item': item,
        'device': rng.choice(len(DEVICES), size=rows, p=DEVICE_PROBS),
        'position': rng.choice(len(POSITION_PROBS), size=rows, p=POSITION_PROBS) + 1,
        'price': np.maximum(price, 0.01),
        'activity': rng.poisson(u.user_activity_rate[user]),
    }


def _logits_without_intercepts(u: _Universe, d: dict) -> tuple[np.ndarray, np.ndarray]:
    """The true click and cvr logits, up to the intercepts solved by calibration."""
    user, item, device = d['user'], d['item'], d['device']
    category = u.item_category[item]
    z_age = (u.user_age[user] - 45.0) / 15.0
    z_price = (np.log(d['price']) - PRICE_LOG_MEAN) / PRICE_LOG_SIGMA
    z_activity = (np.log1p(d['activity']) - 1.2) / 0.8
    shared = np.einsum('ij,ij->i', u.user_shared[user], u.item_shared[item])
    cvr_only = np.einsum('ij,ij->i', u.user_cvr[user], u.item_cvr[item])

    position = POSITION_EFFECT[d['position'] - 1] * np.where(
        device == 0, MOBILE_POSITION_MULTIPLIER, 1.0)
    click = (shared + u.item_click_bias[item] + u.category_click[category]
             + u.category_age_click[category] * z_age + position
             + DEVICE_CLICK_EFFECT[device]
             + ACTIVITY_CLICK_COEF * z_activity + PRICE_CLICK_COEF * z_price)
    cvr = (SHARED_AFFINITY_IN_CVR * shared + cvr_only + u.item_cvr_bias[item]
           + u.category_cvr[category] + u.category_age_cvr[category] * z_age
           + DEVICE_CVR_EFFECT[device] + ACTIVITY_CVR_COEF * z_activity
           + PRICE_CVR_COEF * z_price * (1.0 - PRICE_AGE_CVR_COEF * z_age))
    return click, cvr


def _solve_intercept(logits: np.ndarray, target: float, weights: np.ndarray | None = None) -> float:
    """Intercept b such that the (weighted) mean of sigmoid(b + logits) equals target."""
    return brentq(lambda b: np.average(expit(b + logits), weights=weights) - target, -30.0, 30.0)


def _calibrate(u: _Universe, rng: np.random.Generator) -> tuple[float, float]:
    """Solve both intercepts once per seed, so the rates hold whatever `rows` is."""
    click, cvr = _logits_without_intercepts(u, _draw_impressions(u, CALIBRATION_ROWS, rng))
    click_intercept = _solve_intercept(click, TARGET_CLICK_RATE)
    # The cvr target is a rate among clicks, so weight each impression by p_click.
    cvr_intercept = _solve_intercept(cvr, TARGET_CVR_AMONG_CLICKS,
                                     weights=expit(click_intercept + click))
    return click_intercept, cvr_intercept


def _names(prefix: str, n: int) -> np.ndarray:
    """Id strings as an object array, so indexing it yields pandas-ready columns."""
    return np.array([f'{prefix}{i}' for i in range(n)], dtype=object)


def _check_rows(rows) -> None:
    if isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows <= 0:
        raise ValueError(f'rows must be a positive integer, got {rows!r}')


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}')


def simulate(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw `rows` impressions; return (examples, truth) as row-aligned DataFrames."""
    _check_rows(rows)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    universe = _draw_universe(rng)
    click_intercept, cvr_intercept = _calibrate(universe, rng)

    d = _draw_impressions(universe, rows, rng)
    click_logit, cvr_logit = _logits_without_intercepts(universe, d)
    p_click = expit(click_intercept + click_logit)
    p_cvr = expit(cvr_intercept + cvr_logit)
    click = (rng.random(rows) < p_click).astype(np.int64)
    conversion = click * (rng.random(rows) < p_cvr).astype(np.int64)

    user, item = d['user'], d['item']
    examples = pd.DataFrame({
        'user_id': _names('u', N_USERS)[user],
        'item_id': _names('i', N_ITEMS)[item],
        'item_category': _names('c', N_CATEGORIES)[universe.item_category[item]],
        'device': DEVICES[d['device']],
        'ad_position': d['position'].astype(np.int64),
        'price': d['price'],
        'user_activity': d['activity'].astype(np.int64),
        'item_hist_ctr': universe.item_hist_ctr[item],
        'user_age': universe.user_age[user],
        'click': click,
        'conversion': conversion,
    })
    truth = pd.DataFrame({'p_click': p_click, 'p_cvr': p_cvr, 'p_conversion': p_click * p_cvr})
    return examples, truth


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present (the AUC is undefined)."""
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def bayes_auc(examples: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """AUC of the true probabilities against the drawn labels: each task's ceiling."""
    clicked = examples['click'].to_numpy() == 1
    conversion = examples['conversion'].to_numpy()
    return {
        'click': _auc(examples['click'].to_numpy(), truth['p_click'].to_numpy()),
        'conversion': _auc(conversion, truth['p_conversion'].to_numpy()),
        'cvr': _auc(conversion[clicked], truth['p_cvr'].to_numpy()[clicked]),
    }


def _summary(examples: pd.DataFrame, truth: pd.DataFrame, seed: int) -> dict:
    clicks = int(examples['click'].sum())
    conversions = int(examples['conversion'].sum())
    return {
        'rows': len(examples),
        'seed': int(seed),
        'click_rate': clicks / len(examples),
        'conversion_rate': conversions / len(examples),
        'cvr_rate_among_clicks': conversions / clicks if clicks else None,
        'bayes_auc': bayes_auc(examples, truth),
    }


def _fmt(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.4f}'


def _write_atomically(path: Path, tmp_dir: Path, write) -> None:
    """Write via a temp file outside the target folder, then rename into place.

    The temp file lives in `tmp_dir` (same filesystem) so a crash never leaves a
    stray file inside examples/, which ExampleGen reads wholesale.
    """
    tmp = tmp_dir / f'.{path.name}.{os.getpid()}.tmp'
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_dataset(out_dir, rows: int, seed: int) -> dict:
    """Simulate and write examples/, truth/truth.csv and truth/summary.json; return the summary."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise ValueError(f'out_dir must be a non-empty path, got {out_dir!r}')
    _check_rows(rows)
    _check_seed(seed)
    start = time.perf_counter()
    out = Path(out_dir)
    examples_dir, truth_dir = out / 'examples', out / 'truth'
    examples_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)

    examples, truth = simulate(rows, seed)
    summary = _summary(examples, truth, seed)
    # summary.json goes last: its presence marks a complete dataset.
    _write_atomically(truth_dir / 'truth.csv', out,
                      lambda p: truth.to_csv(p, index=False))
    _write_atomically(examples_dir / 'impressions.csv', out,
                      lambda p: examples.to_csv(p, index=False))
    _write_atomically(truth_dir / 'summary.json', out,
                      lambda p: p.write_text(json.dumps(summary, indent=2) + '\n'))

    auc = {task: _fmt(value) for task, value in summary['bayes_auc'].items()}
    logger.info('wrote %d rows (seed %d) to %s and %s in %.1fs', rows, seed,
                examples_dir / 'impressions.csv', truth_dir, time.perf_counter() - start)
    logger.info('click rate %s, conversion rate %s, cvr among clicks %s',
                _fmt(summary['click_rate']), _fmt(summary['conversion_rate']),
                _fmt(summary['cvr_rate_among_clicks']))
    logger.info('Bayes AUC: click %s, conversion %s, cvr %s',
                auc['click'], auc['conversion'], auc['cvr'])
    return summary
