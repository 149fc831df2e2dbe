"""Measuring a model: ranking metrics, the slice and session protocols, validation, the gate."""
