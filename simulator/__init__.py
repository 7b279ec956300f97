"""Funnel data simulator: impressions with clicks and conversions drawn from known probabilities."""
