"""Solve one question from the command line: greedy, or functional-token MCTS with a vote.

    python -m search.solve --question "What is 17 + 25?"
    python -m search.solve --question "..." --rollouts 8 --json
    python -m search.solve --question "..." --model out/sft/final --rollouts 16

Greedy (the default) decodes the chat-templated question with the engine. With
``--rollouts N`` the functional-token search (rftt/functional_search.py) runs N rollouts
and the answers of its leaves vote (majority; ties go to the answer found first); the
text printed is the best-valued leaf with the winning answer. A model without functional
tokens gets them added (mean-initialised) so the search can branch on them; a model
never trained with them (the base default) will search poorly.
With ``--json`` the last stdout line is a JSON object with ``text`` and ``answer``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import torch

from model import EMBEDDED_NAME, load_model
from model.cli import add_debug_flag, non_negative_float, non_negative_int, positive_int, run_cli
from model.context import STEP_TAG_TOKENS, check_fits_context, search_path_tokens
from rftt.functional_search import FunctionalTokenEnv
from rftt.grading import extract_answer, normalize_answer
from rftt.tokens import add_functional_tokens
from search.engine import Engine
from search.mcts import search
from search.sampling import SamplingParams


def solve_greedy(model, tok, prompt: list[int], max_new_tokens: int) -> str:
    engine = Engine(model, num_slots=len(prompt) + max_new_tokens + 8)
    (branch,) = engine.prefill([prompt], seeds=[0])
    stop = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    engine.decode([branch], SamplingParams(temperature=0), max_new_tokens, stop)
    ids = branch.generated[:-1] if branch.stop_reason == "stop" else branch.generated
    return tok.decode(ids)


def solve_mcts(model, tok, prompt: list[int], rollouts: int, max_step_tokens: int, depth: int,
               temperature: float, seed: int) -> tuple[str, str | None, dict]:
    add_functional_tokens(model, tok)
    engine = Engine(model, num_slots=max(4096, len(prompt) + rollouts * depth * (max_step_tokens + 8) * 2))
    env = FunctionalTokenEnv(engine, tok, SamplingParams(temperature=temperature), max_step_tokens, seed=seed)
    roots = env.roots([prompt])
    search(roots, env, rollouts=rollouts, max_depth=depth)
    leaves = roots[0].leaves()
    answers = [(leaf, extract_answer(env.text(leaf))) for leaf in leaves]
    votes = Counter(normalize_answer(a) for _, a in answers if a is not None)
    if not votes:
        best = max(leaves, key=lambda leaf: leaf.value)
        return env.text(best), None, {}
    winner = votes.most_common(1)[0][0]
    best = max((leaf for leaf, a in answers if a is not None and normalize_answer(a) == winner), key=lambda leaf: leaf.value)
    return env.text(best), extract_answer(env.text(best)), dict(votes)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--question", required=True)
    p.add_argument("--model", default=EMBEDDED_NAME, help=f"Hugging Face directory or '{EMBEDDED_NAME}' (default)")
    p.add_argument("--rollouts", type=non_negative_int, default=0,
                   help="0: greedy; N: functional-token MCTS with N rollouts")
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="greedy: answer length; MCTS: cap per step")
    p.add_argument("--depth", type=positive_int, default=8, help="MCTS: most steps in a path")
    p.add_argument("--temperature", type=non_negative_float, default=0.7,
                   help="MCTS: step sampling temperature (0: greedy steps)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON object")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_debug_flag(p)
    args = p.parse_args(argv)

    model, tok = load_model(args.model, device=args.device)
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": args.question}]))
    if args.rollouts == 0:
        check_fits_context(model.config, len(prompt), args.max_new_tokens, "--question",
                           f"--max-new-tokens {args.max_new_tokens}")
        text = solve_greedy(model, tok, prompt, args.max_new_tokens)
        answer, votes = extract_answer(text), {}
    else:
        check_fits_context(model.config, len(prompt), search_path_tokens(args.depth, args.max_new_tokens), "--question",
                           f"--depth {args.depth} x (--max-new-tokens {args.max_new_tokens} + {STEP_TAG_TOKENS} tag tokens)")
        text, answer, votes = solve_mcts(model, tok, prompt, args.rollouts, args.max_new_tokens, args.depth,
                                         args.temperature, args.seed)
    if args.json:
        print(json.dumps({"text": text, "answer": answer, "rollouts": args.rollouts, "votes": votes}))
    else:
        print(text)
        print(f"\nanswer: {answer}" + (f"  votes: {votes}" if votes else ""), file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
