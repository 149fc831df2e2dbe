"""Event logs and the index structures built from them.

Raw files in (``io``, ``rawlog``, ``preprocess``, ``split``), ids to dense indices (``vocab``,
``admission``), the arrays training reads (``events``, ``sequences``, ``pop_prior``) and the
per-user and per-item state a checkpoint keeps (``seen``, ``context``, ``popularity``,
``reservoir``). Nothing here knows a model.
"""
