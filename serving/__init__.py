"""HTTP serving of vistas bundles: FastAPI app, onnxruntime runtime, request limits.

Import the parts you need (`vistas.serving.app.create_app`, `vistas.serving.server.serve`,
`vistas.inference.onnx_runtime.OnnxRuntime`): this package imports nothing heavy by itself,
and nothing under it ever imports torch or `training`.
"""
