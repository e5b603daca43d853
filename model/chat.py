"""Ask a model one question from the command line and print its greedy answer.

    python -m model.chat "What is 17 + 25?"
    python -m model.chat --model path/to/hf_dir --max-new-tokens 128 "Explain RoPE"

Decoding here recomputes the whole sequence for every new token: simple and obviously
right, a few tokens a second on a CPU for the 135M default. The batched, KV-cached
engine lives in search/.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .cli import add_debug_flag, positive_int, run_cli
from .context import check_fits_context
from .embedded import EMBEDDED_NAME
from .loading import load_model

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@torch.no_grad()
def greedy_generate(model, tokenizer, prompt_ids: list[int], max_new_tokens: int, on_token=None) -> list[int]:
    device = model.embed_tokens.weight.device
    ids = list(prompt_ids)
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids], device=device))[0, -1]  # [vocab]
        next_id = int(logits.argmax())
        if next_id == tokenizer.eos_token_id:
            break
        ids.append(next_id)
        out.append(next_id)
        if on_token is not None:
            on_token(out)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("question", help="the user message")
    p.add_argument("--model", default=EMBEDDED_NAME, help=f"Hugging Face directory or '{EMBEDDED_NAME}' (default)")
    p.add_argument("--system", default=None, help="optional system message")
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_debug_flag(p)
    args = p.parse_args(argv)

    t0 = time.time()
    model, tokenizer = load_model(args.model, dtype=_DTYPES[args.dtype], device=args.device)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.question}
    ]
    prompt = tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    check_fits_context(model.config, len(prompt), args.max_new_tokens, "the question (and --system)",
                       f"--max-new-tokens {args.max_new_tokens}")
    print(f"[{args.model}: {model.num_parameters() / 1e6:.0f}M parameters, loaded in {time.time() - t0:.1f}s]", file=sys.stderr)

    printed = 0

    def stream(out_ids):  # print the new text as it grows (decode whole: BPE pieces join)
        nonlocal printed
        text = tokenizer.decode(out_ids)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            sys.stdout.write(text[printed:])
            sys.stdout.flush()
            printed = len(text)

    t1 = time.time()
    out = greedy_generate(model, tokenizer, prompt, args.max_new_tokens, on_token=stream)
    text = tokenizer.decode(out)
    sys.stdout.write(text[printed:] + "\n")
    print(f"[{len(out)} tokens in {time.time() - t1:.1f}s]", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
