"""Fitting a bundle: ``init`` creates one, ``update`` folds a slice into it.

``lifecycle`` is the entry; it grows vocabularies (``growth``), applies the update policies
(``incremental``), then fits by the model's family: gradient models through ``train`` (with
``early_stop``), closed-form ones through ``closed_form`` (and ``ranker_fit``).
"""
