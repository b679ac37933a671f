"""BLAS on one thread in the compute workers: the fork server imports this module first, before numpy.

The workers are the parallelism (one analysis, one core each); BLAS threads on top of them would oversubscribe
the cores. The environment wins where it says otherwise. The server process never imports this module: its own
BLAS is set where it starts (``python -m api``, the Dockerfile).
"""

from __future__ import annotations

import os

ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Read by BLAS when numpy (and scipy) are first imported."""

for _name, _value in ONE_BLAS_THREAD.items():
    os.environ.setdefault(_name, _value)
