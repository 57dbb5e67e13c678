"""wildmerge: systematic studies of in-the-wild LLM model merging."""

__version__ = "0.1.0"
