"""Checkpoints on disk: the bundle, its file format, checksums, registries and locks."""
