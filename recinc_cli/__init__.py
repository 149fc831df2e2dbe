"""recinc: train recommendation models on event logs and keep them fresh incrementally.

The Python API lives in :mod:`recinc_cli.api`; the ``recinc`` command is a thin layer over it.
"""

from recinc_cli.threads import set_wait_policy

# Before anything loads torch: its OpenMP runtime reads the wait policy once, at load
# (idle threads that spin starve other jobs on the machine; see recinc_cli.threads).
set_wait_policy()

__version__ = "0.12.0"
