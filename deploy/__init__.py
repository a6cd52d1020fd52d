"""Deployment: Triton model repositories and TensorRT engine commands generated from a bundle.

Imports only `vistas` (the bundle contract); nothing here needs torch or a GPU to run.
"""
