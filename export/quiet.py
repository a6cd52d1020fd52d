"""Third-party messages printed during an export that tell a user nothing to act on, silenced.

`vistas export` printed a dozen lines of other libraries' internals on every run, which read as
if something had gone wrong. Each one silenced here is named with why (the versions are pinned;
tests/export/test_file_modes.py asserts that `vistas export` writes nothing to stderr, so a new
one shows up there). Anything else still prints.

* torch.onnx, "torchvision is not installed. Skipping torchvision::nms" (4 lines per graph): the
  exporter's table of torchvision operators; no vistas model uses torchvision.
* torch, FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated": torch's exporter calling
  torch's own deprecated pytree API.
* transformers, "Model config: bos_token_id / eos_token_id must be `None` or an integer within the
  vocabulary": SigLIP configs carry CLIP's token ids (49406, 49407) beside a 32,000-token
  vocabulary; vistas never reads them (the tokenizer's own EOS is used, and every export checks
  the tokenizer against the reference one).
* onnxruntime quantization, "Please consider to run pre-processing before quantization": shape
  inference advice for static, calibrated quantization; `--quantize int8` is dynamic and measures
  what it costs (bundle.json `quantization`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# logger name -> message beginnings dropped from it (the root logger is "": onnxruntime logs there)
NOISE = {
    "torch.onnx._internal.exporter._registration": ("torchvision is not installed",),
    "transformers.configuration_utils": ("Model config: bos_token_id", "Model config: eos_token_id"),
    "": ("Please consider to run pre-processing before quantization",),
}
FUTURE_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


class _DropMessages(logging.Filter):
    def __init__(self, beginnings: tuple[str, ...]):
        super().__init__()
        self.beginnings = beginnings

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.beginnings)


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Within: the messages listed in the module docstring are dropped; nothing else changes."""
    filters = [(logging.getLogger(name), _DropMessages(beginnings)) for name, beginnings in NOISE.items()]
    for logger, f in filters:
        logger.addFilter(f)
    try:
        with warnings.catch_warnings():
            for message in FUTURE_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield
    finally:
        for logger, f in filters:
            logger.removeFilter(f)
