"""Scoring users from a bundle: top-k, fresh history, popularity fallback."""
