"""Ask a model one question from the command line and print its greedy answer.

    python -m search.chat "What is 17 + 25?"
    python -m search.chat --model path/to/hf_dir --max-new-tokens 128 "Explain RoPE"

The question goes to the model as it is (no solver instructions: `python -m train.solve`
asks the way RFTT's evaluation does) and the answer streams as the KV-cached engine
decodes it greedily (search/greedy.py), stopping at EOS.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from model import DEFAULT_MODEL, EMBEDDED_MODELS, load_model
from model.cli import HelpFormatter, add_debug_flag, add_device_flag, positive_int, run_cli
from model.context import check_fits_context

from .engine import Engine
from .greedy import greedy_decode

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("question", help="the user message")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"an embedded name ({', '.join(EMBEDDED_MODELS)}) or a Hugging Face directory")
    p.add_argument("--system", default=None, help="optional system message")
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="cap on the answer's tokens")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="the weights' dtype in memory")
    add_device_flag(p)
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
    engine = Engine.for_search(model, len(prompt), 1, args.max_new_tokens)
    stop = {tokenizer.eos_token_id} - {None}
    (out,) = greedy_decode(engine, [prompt], args.max_new_tokens, stop, tokenizer.eos_token_id, on_token=stream)
    text = tokenizer.decode(out)
    sys.stdout.write(text[printed:] + "\n")
    print(f"[{len(out)} tokens in {time.time() - t1:.1f}s]", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
