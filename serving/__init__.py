"""HTTP serving of vistas bundles: FastAPI app, onnxruntime runtime, request limits.

Import the parts you need (`serving.app.create_app`, `serving.server.serve`,
`serving.runtime.OnnxRuntime`): this package imports nothing heavy by itself,
and nothing under it ever imports torch or `training`.
"""
