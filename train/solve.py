"""Solve one question from the command line: greedy, or functional-token MCTS with a vote.

    python -m train.solve --question "What is 17 + 25?"
    python -m train.solve --question "..." --rollouts 8 --json
    python -m train.solve --question "..." --model runs/sft/final --rollouts 16

The question is posed exactly as `python -m train.eval` poses each of its problems: the
solver prompt (rftt/prompts.py), greedy decoding that stops at EOS or after `</output>`
(train/accuracy.py), and with ``--rollouts N`` the same functional-token search and
majority vote (train/inference_search.py; ties go to the answer found first). The text
printed for a search is the best-valued leaf with the winning answer. A model without
functional tokens gets them added (mean-initialised), as train.eval does, so the search
can branch on them; a model never trained with them (the base default) searches poorly.
With ``--json`` the last stdout line is a JSON object with ``text`` and ``answer``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import torch

from model import DEFAULT_MODEL, EMBEDDED_MODELS, load_model
from model.cli import (HelpFormatter, add_debug_flag, add_device_flag, non_negative_float, non_negative_int,
                       positive_int, run_cli, unit_float)
from model.context import check_fits_context, search_path_caps, search_path_tokens
from rftt.functional_search import MIN_FUNCTION_PROB
from rftt.grading import extract_answer, normalize_answer
from rftt.prompts import solve_prompt_ids
from rftt.tokens import add_functional_tokens
from search.mcts import search
from train.accuracy import greedy_responses
from train.inference_search import leaf_answers, majority_answer, start_search


@torch.inference_mode()
def solve_mcts(model, tok, question: str, rollouts: int, max_step_tokens: int, depth: int,
               temperature: float, seed: int, direct_answer_tokens: int | None = None,
               min_function_prob: float = MIN_FUNCTION_PROB) -> tuple[str, str | None, dict]:
    """(text of the best-valued leaf with the majority answer, that answer, the tally)."""
    env, roots = start_search(model, tok, [question], rollouts=rollouts, depth=depth,
                              max_step_tokens=max_step_tokens, temperature=temperature, seed=seed,
                              direct_answer_tokens=direct_answer_tokens, min_function_prob=min_function_prob)
    search(roots, env, rollouts=rollouts, max_depth=depth)
    answers = leaf_answers(env, roots[0])
    winner = majority_answer([a for _, a in answers])
    if winner is None:  # no leaf answered: show the most valued path anyway
        return env.text(max((leaf for leaf, _ in answers), key=lambda leaf: leaf.value)), None, {}
    voters = [leaf for leaf, a in answers if a is not None and normalize_answer(a) == normalize_answer(winner)]
    tally = Counter(normalize_answer(a) for _, a in answers if a is not None)
    return env.text(max(voters, key=lambda leaf: leaf.value)), winner, dict(tally)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m train.solve", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--question", required=True, help="the problem to solve")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"an embedded name ({', '.join(EMBEDDED_MODELS)}) or a Hugging Face directory")
    p.add_argument("--rollouts", type=non_negative_int, default=0,
                   help="0: greedy; N: functional-token MCTS with N rollouts")
    p.add_argument("--max-new-tokens", type=positive_int, default=256,
                   help="greedy: answer length; MCTS: cap per step")
    p.add_argument("--direct-answer-tokens", type=positive_int, default=None,
                   help="MCTS: cap on a direct answer, which writes the rest of the solution in one step "
                        "(default: --max-new-tokens)")
    p.add_argument("--depth", type=positive_int, default=8, help="MCTS: most steps in a path")
    p.add_argument("--temperature", type=non_negative_float, default=0.7,
                   help="MCTS: step sampling temperature (0: greedy steps)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="MCTS: seed of the step sampling")
    p.add_argument("--min-function-prob", type=unit_float, default=MIN_FUNCTION_PROB,
                   help="MCTS: a functional token becomes a child only when the model gives it at least this "
                        "probability, as in train.eval (0: every allowed function)")
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON object")
    add_device_flag(p)
    add_debug_flag(p)
    args = p.parse_args(argv)

    model, tok = load_model(args.model, device=args.device)
    add_functional_tokens(model, tok)  # as train.eval: a no-op for a trained RFTT model
    prompt_tokens = len(solve_prompt_ids(tok, args.question))
    if args.rollouts == 0:
        check_fits_context(model.config, prompt_tokens, args.max_new_tokens, "--question",
                           f"--max-new-tokens {args.max_new_tokens}")
        (text,) = greedy_responses(model, tok, [args.question], args.max_new_tokens, progress=False)
        answer, votes = extract_answer(text), {}
    else:
        check_fits_context(model.config, prompt_tokens,
                           search_path_tokens(args.depth, args.max_new_tokens, args.direct_answer_tokens),
                           "--question", search_path_caps(args.depth, "--max-new-tokens", args.max_new_tokens,
                                                          args.direct_answer_tokens))
        text, answer, votes = solve_mcts(model, tok, args.question, args.rollouts, args.max_new_tokens, args.depth,
                                         args.temperature, args.seed, args.direct_answer_tokens,
                                         args.min_function_prob)
    if args.json:
        print(json.dumps({"text": text, "answer": answer, "rollouts": args.rollouts, "votes": votes}))
    else:
        print(text)
        print(f"\nanswer: {answer}" + (f"  votes: {votes}" if votes else ""), file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
