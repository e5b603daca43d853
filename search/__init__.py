"""Tree search over a shared KV cache: the KV pool, the token tree (branches share their
prefix's slots), the batched generation engine, sampling, and MCTS. Knows nothing of RFTT."""
