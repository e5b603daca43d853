"""Rewards for toy RL tasks a tiny random model can learn in seconds (tests only).

A tiny random model never writes a correct boxed answer, so the outcome reward is 0 for
every rollout and nothing can be learned from it. These rewards score something the
policy controls from the first iteration: the text it samples inside the steps.
"""

import re

LETTERS = set("abcdefghijklmnopqrstuvwxyz")


def lowercase_fraction(response: str, gold: str) -> float:
    """The fraction of the steps' characters (tags removed) that are lowercase letters.
    A byte-level random model writes ~10% of them; the policy can push that up."""
    body = re.sub(r"</?[a-z_]+>", "", response)
    return sum(c in LETTERS for c in body) / max(1, len(body))
