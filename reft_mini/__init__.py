"""reft_mini: a small, from-scratch, heavily commented implementation of ReFT (Luong et al., 2024).

One job per module: model, tokenizer, sampling, data, synthetic, reward, program, ppo, kernels,
evaluation, stats, checkpoint, config, dist, metrics, exercises, bench. The two stages of the method
are the scripts train_warmup.py (SFT warm-up) and train_ppo.py (PPO) at the repository's top level.
"""
