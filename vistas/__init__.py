"""vistas: train, export and serve big_vision-family image-text models.

This package is the shared contract that training, export and serving import:
bundle spec, image preprocessing, tokenization, data sources and the CLI.
It must never import torch (serving runs without it).
"""

__version__ = "0.1.0"
