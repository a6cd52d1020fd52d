"""Training: PyTorch models, losses, data, the train loop and evaluators."""
