# The serving image: onnxruntime + FastAPI + FAISS, no torch, no training code needed at run time.
#   docker build -t vistas-serve .
#   docker run -p 8000:8000 vistas-serve                       # the bundled model + demo-free server
#   docker run -p 8000:8000 -v $PWD/bundle:/bundle -v $PWD/idx:/index vistas-serve /bundle --index /index
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
# Every folder that pyproject maps into the `vistas` namespace must be there for pip to build it;
# training/export code is a few hundred KB and is never imported without torch.
COPY vistas ./vistas
COPY inference ./inference
COPY serving ./serving
COPY index ./index
COPY deploy ./deploy
COPY training ./training
COPY export ./export
COPY bench ./bench
COPY configs ./configs
COPY models/siglip-shapes-digits/bundle ./models/siglip-shapes-digits/bundle
# Only the `serve` extra: torch, transformers and the training stack stay out of the image.
RUN pip install '.[serve]' && python -c "import vistas.serving.app, sys; assert 'torch' not in sys.modules"

RUN useradd --system --uid 10001 vistas && mkdir /index && chown vistas /index
USER vistas
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
ENTRYPOINT ["vistas", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["/app/models/siglip-shapes-digits/bundle", "--index", "/index"]
