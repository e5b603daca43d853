"""RFTT, the method: functional tokens and their transitions, step formatting and
parsing, the solver and phase-1 prompts, answer grading, rewards, problem sets, and the
phase-1 search that turns trees into SFT trajectories (cross-verified merges)."""
