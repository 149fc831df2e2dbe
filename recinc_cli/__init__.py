"""recinc: train recommendation models on event logs and keep them fresh incrementally.

The Python API lives in :mod:`recinc_cli.api`; the ``recinc`` command is a thin layer over it.
"""

__version__ = "0.5.0"
