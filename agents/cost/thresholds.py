"""When the cost agent speaks up: thresholds as data, with the reasons for each default."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CostThresholds(BaseModel):
    """Defaults chosen so that a healthy fleet yields nothing of consequence."""

    idle_max_request_rate: float = Field(
        1e-3,
        description="Requests/s (all replicas) at or below which a deployment is idle "
        "(1e-3/s is under 4 requests an hour).",
    )
    idle_min_span_seconds: float = Field(
        600,
        description="Shortest observed span of engine metrics before 'idle' is said; "
        "less data is 'unknown', never 'idle'.",
    )
    idle_min_samples: int = Field(3, description="Fewest engine samples before 'idle' is said.")
    min_saving_usd_per_month: float = Field(
        25.0, description="Smallest monthly saving worth a person's review."
    )
    min_saving_ratio: float = Field(
        0.10, description="Smallest relative saving of a right-sizing worth its migration."
    )
    spot_min_replicas: int = Field(
        2, description="Replicas a deployment needs before any go to spot (one stays on-demand)."
    )
    commitment_min_history_days: float = Field(
        30.0, description="History needed before sizing a commitment (reserved / savings plan)."
    )
    commitment_percentile: float = Field(
        10.0,
        description="Percentile of hourly on-demand instances a commitment is sized at: "
        "low, so the commitment stays used in (100 - p)% of hours.",
    )
    headroom: float = Field(
        1.25, description="Capacity a right-sized deployment keeps above its observed rate."
    )
