"""reft_mini: a small, from-scratch, heavily commented implementation of ReFT (Luong et al., 2024).

This package is the method and nothing else; each module has one job its name says:
  model (GPT-2 with a value head and a KV cache), tokenizer (loading the encodings), data (the problem
  record, the prompt, the loaders, SFT encoding), sampling, reward + program (the 1 / 0.1 / 0 score and
  the safe P-CoT runner), ppo (KL-shaped rewards, GAE, whitening, clipped losses), kernels (fused
  log-probs), evaluation (answering and scoring held-out questions), stats, and the helpers checkpoint,
  config, dist, metrics.
The two stages are the scripts train_warmup.py (SFT warm-up) and train_ppo.py (PPO) at the top level.
What is left out of the package on purpose: the synthetic data generator, the base model's pretraining
and the tokenizer trainer live in data/ beside what they produce; the benchmark and the classroom
exercises live in tools/. The method never imports them.
"""
