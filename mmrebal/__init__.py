"""mmrebal: rebalanced multimodal learning from the data side."""

__version__ = "0.1.0"
