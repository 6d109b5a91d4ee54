"""Red-teaming by attack vector (Llama 2 §4.3): attack plugins, an automated PAIR-style attacker, local or
endpoint targets, attack success rate per vector × risk category, fix rate, and export of what worked.

    from safealign.redteam import RedteamConfig, run_redteam
    metrics = run_redteam("embedded", ["seed-dev:30"], "runs/x/redteam", RedteamConfig(max_new_tokens=48))

Attacks are plugins registered by name (`list_attacks()`, `register_attack`); see `attacks/base.py`.
"""

from safealign.redteam.attacks.base import (
    Attack,
    SeedRequest,
    get_attack,
    list_attacks,
    register_attack,
    resolve_attacks,
)
from safealign.redteam.run import DEFAULT_ATTACKS, RedteamConfig, run_redteam

__all__ = ["DEFAULT_ATTACKS", "Attack", "RedteamConfig", "SeedRequest", "get_attack", "list_attacks",
           "register_attack", "resolve_attacks", "run_redteam"]
