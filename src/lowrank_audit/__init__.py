"""lowrank-audit: did a fine-tuning method learn the shift its data asked for?"""

__version__ = "0.1.0"
