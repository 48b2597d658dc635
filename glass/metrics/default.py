"""``metric=default``: the metric that fits the task and the model.

posterior / generate on the oracle -> ``oracle`` (distance to exact samples); on MNIST -> ``fid``;
on pretrained models without a reference set here (FLUX, SD3, SD, SiT) -> ``none``;
value -> ``correlation`` (with the exact value on the oracle, a cached Monte-Carlo one on images).
"""

from __future__ import annotations

from glass.models.base import capabilities_of

__all__ = ["DefaultMetric", "resolve_metric"]


class DefaultMetric:
    """Stands for the metric that fits; ``cache_dir`` is where a resolved FID caches its reference
    statistics (``<out_dir>/cache`` from the config)."""

    def __init__(self, cache_dir: str = "outputs/cache"):
        self.cache_dir = cache_dir

    def __repr__(self) -> str:
        return "DefaultMetric()"


def resolve_metric(metric, task_name: str, model):
    """Replace ``Default`` by the fitting metric; check an explicit one fits task and model."""
    from glass.metrics.correlation import Correlation
    from glass.metrics.fid import FID
    from glass.metrics.none import NoMetric
    from glass.metrics.oracle import OracleDistance

    caps = capabilities_of(model)
    oracle = caps.oracle
    has_data = oracle or caps.data
    if isinstance(metric, DefaultMetric):
        if task_name == "value":
            return Correlation()
        if not has_data:  # a pretrained model with no reference set here: reward and NFE only
            return NoMetric()
        if oracle:
            return OracleDistance()
        metric = FID(cache_dir=metric.cache_dir)
        metric.check_cache()
        metric.check_reference()
        return metric
    if isinstance(metric, NoMetric):
        return metric
    if metric.text_to_image:
        if not caps.prompts:
            raise ValueError(
                f"metric=rewards scores images against their prompts; {type(model).__name__} takes none"
            )
        if task_name not in ("generate", "fk_steering", "best_of_n", "guidance"):
            raise ValueError(
                f"metric=rewards scores generated images: use task=generate or an alignment task, "
                f"not {task_name}"
            )
        metric.load()  # missing reward weights fail here, before anything runs
        return metric
    from glass.metrics.curvature import Curvature

    if isinstance(metric, Curvature):
        if task_name != "generate":
            raise ValueError(
                f"metric=curvature measures the model's ODE paths: use task=generate, not {task_name}"
            )
        metric.inner = resolve_metric(DefaultMetric(metric.cache_dir), task_name, model)
        return metric
    if isinstance(metric, FID) and not has_data:
        raise ValueError(f"metric=fid compares with MNIST test images; {model!r} has none (use metric=none)")
    if task_name == "value" and not isinstance(metric, Correlation):
        raise ValueError(f"task=value is scored with metric=correlation (or default), got {metric!r}")
    if task_name != "value" and isinstance(metric, Correlation):
        raise ValueError(f"metric=correlation scores task=value, not task={task_name}")
    if isinstance(metric, OracleDistance) and not oracle:
        raise ValueError("metric=oracle needs an exact oracle model (model=gmm or gmm64); use metric=fid")
    if isinstance(metric, FID) and oracle:
        raise ValueError("metric=fid scores images (model=mnist); use metric=oracle on the oracle")
    if isinstance(metric, FID):
        metric.check_cache()  # an unwritable cache fails here, not after sampling
        metric.check_reference()
    if isinstance(metric, FID) and metric.features != "mnist":
        metric.extractor("inception")  # missing Inception weights fail here, before anything runs
    return metric
