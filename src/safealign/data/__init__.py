"""Record types, the project's own seed data, and loaders for public evaluation sets."""

from safealign.data.records import Example, load_examples, load_seed, normalize_text, split_examples

__all__ = ["Example", "load_examples", "load_seed", "normalize_text", "split_examples"]
