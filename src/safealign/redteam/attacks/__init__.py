"""Attack plugins by attack vector, discovered by name (see `base.py` for the plugin contract)."""

from safealign.redteam.attacks.base import (
    Attack,
    SeedRequest,
    get_attack,
    list_attacks,
    register_attack,
    resolve_attacks,
)

__all__ = ["Attack", "SeedRequest", "get_attack", "list_attacks", "register_attack", "resolve_attacks"]
