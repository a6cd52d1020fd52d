"""The inference library: a bundle's towers behind one runtime interface, and the model on top.

    from vistas.inference.model import load_model
    model = load_model("models/siglip-shapes-digits/bundle")   # onnxruntime by default
    model.embed_images([pil_image]), model.embed_texts(["a red circle"])

`runtime` (runtime-neutral: TensorSpec, BundleRuntime, input checks), `onnx_runtime` (onnxruntime),
`triton_runtime` (tritonclient), `runtimes` (the registry that opens one by URL) and `model`
(images and texts -> tensors -> embeddings, classify). Export's parity check, evaluation, the
benchmarks, the batch indexing job and the HTTP server all embed through this package. It imports
only the shared contract (`vistas.bundle`, `vistas.images`, ...): no torch, no FastAPI, no FAISS.
"""
