"""Checkpoint -> bundle (ONNX towers + bundle.json), verified against PyTorch."""
