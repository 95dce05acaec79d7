"""Execution engines for the commands that run over many images (``dissam predict``,
``prepare-masks`` and ``benchmark``).

* ``local`` (default): one process, or one process per GPU under ``torchrun`` with a static split by
  ``RANK``/``WORLD_SIZE`` (:mod:`dissam.batch_predict`, :mod:`dissam.data.prepare`,
  :mod:`dissam.paper_tables`).
* ``ray``: the same work on Ray Data (``pip install 'dissam[ray]'``): reading and decoding in CPU
  tasks, one model per actor in an actor pool (GPUs per actor may be fractional), streaming between
  them, lost workers retried by Ray, inputs and outputs on any filesystem pyarrow or fsspec reaches.
  The modules: :mod:`~dissam.engines.storage` (folders on any filesystem),
  :mod:`~dissam.engines.ray_runtime` (connecting, actor settings), :mod:`~dissam.engines.batching`
  (several images through one predictor), :mod:`~dissam.engines.ray_predict`,
  :mod:`~dissam.engines.ray_prepare`, :mod:`~dissam.engines.ray_benchmark`; the public entry point for
  an existing Ray pipeline is :mod:`dissam.ray`.

Nothing here imports Ray until a Ray job runs: ``import dissam`` and ``dissam --help`` stay light.
"""

ENGINES = ("local", "ray")
"""The ``--engine`` choices."""

__all__ = ["ENGINES"]
