"""Commitment discounts (reserved instances, savings plans, committed use) as data.

These are published *typical* 1-year rates, used when nothing better is known; a team
with negotiated rates passes its own table. Each entry says where its figure comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommitmentTerm:
    cloud: str
    name: str
    term_months: int
    #: Discount off the on-demand hourly price, 0-1.
    discount: float
    source: str


DEFAULT_COMMITMENTS: dict[str, CommitmentTerm] = {
    "aws": CommitmentTerm(
        cloud="aws",
        name="EC2 Reserved Instance / Savings Plan, 1 year, no upfront",
        term_months=12,
        discount=0.30,
        source="AWS reserved-instance payment options: no-upfront 1-year discounts "
        "'typically about 30%' against on-demand",
    ),
    "gcp": CommitmentTerm(
        cloud="gcp",
        name="Compute Engine committed use discount (GPUs), 1 year",
        term_months=12,
        discount=0.37,
        source="Google Cloud committed use discounts for GPUs: 37% for a 1-year commitment",
    ),
}
