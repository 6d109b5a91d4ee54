"""Independent judges of model responses (refusal, harm, toxicity), each validated against human labels.

    from safealign.judges import get_judge
    judge = get_judge("refusal")
    judge.judge(prompt, response)          # -> Verdict(refusal="full", refusal_prob=0.97, ...)
    judge.validation()                     # -> held-out accuracy / precision / recall / f1 / kappa / roc_auc

Judges are registered by name (`list_judges()`); rule judges are pure Python, trained judges train on
first use from the public human-labelled sets and cache their weights under `cache_dir("judges")`.
"""

from safealign.judges.base import Judge, Verdict
from safealign.judges.registry import DEFAULT_JUDGES, get_judge, list_judges, register_judge

__all__ = ["DEFAULT_JUDGES", "Judge", "Verdict", "get_judge", "list_judges", "register_judge"]
