"""Training stages: safety SFT (TRL), reward models, the gated reward, rejection sampling, PPO, distillation."""
