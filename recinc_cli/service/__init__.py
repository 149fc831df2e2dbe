"""``recinc serve``: an HTTP JSON service over a checkpoint or a registry.

``holder.py`` keeps the model served and swaps in each new registry version (hot reload);
``app.py`` the FastAPI routes; ``metrics.py`` the Prometheus counters; ``run.py`` starts uvicorn.
Above ``serving/`` and ``store/``, below ``api.py``; imported only by ``recinc serve``.
"""
