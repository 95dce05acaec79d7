"""DIS-SAM in a Ray Data pipeline you already have (``pip install 'dissam[ray]'``).

:func:`predict_dataset` takes a ``ray.data.Dataset`` of images (``path``, optionally the encoded
``bytes``) with their ``boxes`` and returns a ``ray.data.Dataset`` of predictions: the masks and soft
maps as arrays, or, given an output folder (a path or a URI such as ``s3://bucket/masks``), the files,
done markers and resume rules of ``dissam predict``. Reading and decoding run as CPU tasks and the
models in an actor pool (one predictor per actor, ``gpus_per_actor`` may be fractional); Ray retries
lost workers. Example::

    import ray, dissam.ray
    ds = ray.data.read_binary_files("s3://shop/photos/", include_paths=True)
    ds = ds.map(lambda row: {**row, "boxes": [[0, 0, 511, 511]]})
    preds = dissam.ray.predict_dataset(ds, model="dis-sam", out="s3://shop/masks", actors=8, gpus_per_actor=1)
    preds.materialize()

:class:`PredictActor` and :func:`read_batch` are the two stages, for pipelines that want to place them
themselves (``ds.map_batches(read_batch, fn_kwargs={"job": job})`` then ``ds.map_batches(PredictActor,
fn_constructor_kwargs={"job": job}, compute=ray.data.ActorPoolStrategy(size=n), num_gpus=1)``).
"""

from dissam.batch_predict import OutputOptions
from dissam.engines.ray_predict import PredictActor, PredictJob, predict_dataset, read_batch
from dissam.engines.ray_runtime import RayOptions, connect

__all__ = ["predict_dataset", "PredictActor", "PredictJob", "read_batch", "OutputOptions", "RayOptions", "connect"]
