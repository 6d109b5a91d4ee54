"""The direct request: the seed unchanged. The baseline every other vector is compared against."""

from __future__ import annotations

from safealign.redteam.attacks.base import SeedRequest, register_attack


@register_attack("direct", vector="direct", technique="as_written")
def direct(seed: SeedRequest) -> list[str]:
    """The request as written, with no manipulation (the baseline)."""
    return [seed.prompt]
