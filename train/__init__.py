"""The training stages: python -m train.sft (phase 1), python -m train.ppo (phase 2),
python -m train.eval, and the loop parts they share (checkpoints, schedule, metrics,
sequences, advantages, the PPO loss, FSDP2)."""
