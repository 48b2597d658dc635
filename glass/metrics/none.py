"""``metric=none``: no sample-quality metric (models without a reference data set, e.g. FLUX or SD3,
where the reward and NFE are what a run reports)."""

from __future__ import annotations

__all__ = ["NoMetric"]


class NoMetric:
    text_to_image = False  # scores samples alone (metric=rewards gets the model and prompts)

    def __call__(self, *args, **kwargs) -> dict:
        return {}

    def __repr__(self) -> str:
        return "NoMetric()"
