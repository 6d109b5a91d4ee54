"""safealign: the Llama 2 safety recipe, end to end, honestly measured."""

__version__ = "0.1.0"
