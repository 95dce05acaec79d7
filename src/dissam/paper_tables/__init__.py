"""``dissam benchmark``: the paper's Tables 1 and 3 end to end, with baselines and box jitter.

For every image of every split (``ROOT/<split>/{im,gt,[mask]}``) the prompt comes from the ground
truth, exactly as in the paper's protocol:

* **SAM box** (whole-GT box, :func:`dissam.data.enrich.prompt_box`): GT binarised at ``>= 128``; 8-connected components of at least
  0.4% of the image area survive; one survivor -> its box, several -> the box of the whole binarised
  mask. (No survivor: the authors produce nothing; we fall back to the box of the whole binarised
  mask and record ``"fallback": true`` in the box file.) XYXY, inclusive pixels of the original image.
* **SAM coarse mask**: ``ROOT/<split>/mask/<stem>.png`` when present (the authors' released masks),
  otherwise SAM (``masks[0]`` of the multimask output, the authors' choice) on the whole-GT box,
  cached in ``RUN_DIR/sam-masks/<variant>/<split>/<stem>.png``.
* **Refiner input** (faithful mode, :func:`dissam.transforms.faithful_sample`): RGB, SAM mask and the
  box map drawn from the resized GT with the authors' quirks.
* **Saved map** (as the authors save it): d1 -> bilinear to the original size -> per-image min-max -> x255 -> uint8
  truncation, ``RUN_DIR/predictions/<method>/<split>/<stem>.png``; then :mod:`dissam.evaluate`.

Methods: ``dis-sam``; ``sam`` (the coarse SAM masks x255); ``hq-sam`` (HQ-SAM, same box,
single-output mask as HQ-SAM's own predictor defaults to); ``isnet`` (3-channel IS-Net, no prompt,
the RGB channels of the faithful input, same post-processing).

Box jitter (``jitter_pcts``): each side of the SAM box moves independently by ``u * pct/100`` of the
box width (x sides) or height (y sides), ``u ~ U[-1, 1]`` drawn from a generator seeded by
``(seed, crc32(split), crc32(stem))`` (the same ``u`` for every pct, so 5% and 10% jitter move the
sides in the same directions), rounded to whole pixels and clipped to the image. SAM is re-run on the
jittered box, and the refiner's box channel is replaced by
:func:`dissam.transforms.box_map_from_box` of the jittered box (mapped onto the ``size x size``
grid). The methods become ``<method>@jitter<pct>`` (``dis-sam``, ``sam``, ``hq-sam``; ``isnet``
takes no prompt).

Sharding (:mod:`dissam.sharding`): under ``torchrun`` (or with ``RANK``/``WORLD_SIZE`` set by hand)
each rank takes ``items[rank::world_size]`` of the image list sorted by ``(split, stem)`` on
``cuda:LOCAL_RANK``; rank 0 waits for the others (torch.distributed gloo barrier when
``MASTER_ADDR``/``MASTER_PORT`` are set, otherwise a file barrier in ``RUN_DIR/shards/<run id>/``)
and evaluates.

The package: :mod:`~dissam.paper_tables.protocol` (methods, prompt boxes, jitter, items),
:mod:`~dissam.paper_tables.config` (settings), :mod:`~dissam.paper_tables.runner` (per-image work),
:mod:`~dissam.paper_tables.run` (the loop and sharding), :mod:`~dissam.paper_tables.report` (tables).
"""

from dissam.paper_tables.config import BenchmarkConfig, check_settings, resolve_methods
from dissam.paper_tables.protocol import (
    DIS5K_SPLITS,
    HQ_SELECTION,
    MAX_JITTER,
    METHODS,
    PROMPTED,
    SAM_SELECTION,
    Item,
    columns,
    discover_splits,
    jitter_box,
    method_name,
    parse_jitters,
    split_items,
    variant_name,
    whole_gt_box,
)
from dissam.paper_tables.report import evaluate_run
from dissam.paper_tables.run import run_benchmark
from dissam.paper_tables.runner import write_png_fast
from dissam.sharding import shard

__all__ = [
    "BenchmarkConfig", "check_settings", "resolve_methods", "DIS5K_SPLITS", "HQ_SELECTION", "MAX_JITTER",
    "METHODS", "PROMPTED", "SAM_SELECTION", "Item", "columns", "discover_splits", "jitter_box",
    "method_name", "parse_jitters", "split_items", "variant_name", "whole_gt_box", "evaluate_run",
    "run_benchmark", "write_png_fast", "shard",
]

