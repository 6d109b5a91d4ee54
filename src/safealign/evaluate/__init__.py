"""Evaluation: an evaluation is prompts × generator × judge × metric, each swappable by name."""
