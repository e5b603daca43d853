"""The one prompt a solver sees: the question, and where the final answer goes.

Greedy evaluation, SFT training examples, RL rollouts and inference-time search all put
a question to the model the same way, so what SFT teaches is what RL and evaluation ask
for. (The authors' release generated with one template and trained with another, so its
RL policy was asked questions in a form SFT never showed it.) The phase-1 search has its own, per-function prompts
(rftt/sft_prompts.py); those are instructions to a helper, not the solver's prompt.
"""

from __future__ import annotations

# Asking for \boxed{} explicitly: the grader reads the last \boxed{} (rftt/grading/extract.py), and
# the release's prompts asked for "\box{}", which its own grader never found.
ANSWER_INSTRUCTION = "Put the final answer in \\boxed{}."


def solve_messages(question: str) -> list[dict]:
    """The chat messages for solving `question` (apply the tokenizer's chat template)."""
    return [{"role": "user", "content": f"{question.strip()}\n{ANSWER_INSTRUCTION}"}]


def solve_prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the chat-templated question, ending where the answer starts."""
    return tokenizer.encode(tokenizer.apply_chat_template(solve_messages(question)))
