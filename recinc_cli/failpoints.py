"""Named pause points for the crash tests: a run can be frozen at an exact moment and killed.

A process started with ``RECINC_PAUSE_AT=<name>`` that reaches :func:`pause_point` ``name``
writes its pid to the file ``RECINC_PAUSE_FILE`` (when set) and sleeps, so a test can SIGKILL
it there: between two writes of a checkpoint, after the rename and before the pointer switch,
and so on. Unset (always, outside the tests), a pause point costs one dictionary lookup.

Points, in the order an ``update`` reaches them: ``locked``, ``loaded``, ``read``,
``epoch`` (each epoch's end), ``trained``, ``gated``, ``save:open``, ``save:partial``,
``save:written``, ``save:renamed``, ``registry:switched``. ``replay`` reaches
``replay:slice-N`` once its report.json holds N slices (0: the base model). Under torchrun,
``RECINC_PAUSE_RANK=R`` arms the point in rank R only.

>>> pause_point("loaded")  # not armed: returns at once
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_POINT = "RECINC_PAUSE_AT"
ENV_FILE = "RECINC_PAUSE_FILE"
ENV_RANK = "RECINC_PAUSE_RANK"


def pause_point(name: str) -> None:
    """Sleep forever here when ``RECINC_PAUSE_AT`` names this point (crash tests only)."""
    if os.environ.get(ENV_POINT) != name:
        return
    if ENV_RANK in os.environ and os.environ[ENV_RANK] != os.environ.get("RANK", "0"):
        return
    marker = os.environ.get(ENV_FILE)
    if marker:
        Path(marker).write_text(str(os.getpid()))
    while True:  # until the test kills us
        time.sleep(60)
