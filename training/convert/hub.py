"""`hf:` sources: a local directory, or a hub id found in the local Hugging Face cache.

vistas never downloads at run time: a hub id resolves only through the cache that
`hf download` (or any transformers `from_pretrained` with network) filled, with
HF_HUB_OFFLINE semantics (`local_files_only=True`). The cache is the one
huggingface_hub uses: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
"""

from __future__ import annotations

import os
from pathlib import Path


class SourceNotFoundError(FileNotFoundError):
    """A model source that does not exist locally; the message says what to do."""


def hub_cache() -> Path:
    """The cache directory huggingface_hub would use, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_hf(ref: str) -> Path:
    """'path/to/dir' or 'org/name' -> a local directory holding the checkpoint's files."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    cache = hub_cache()
    how = (
        "vistas never downloads models. Download it once on a machine with network "
        f"(`hf download {ref}`, or `huggingface-cli download {ref}`) into that cache, or pass "
        "a local checkpoint directory: hf:/path/to/dir"
    )
    if path.exists():
        raise SourceNotFoundError(f"hf:{ref} is a file; expected a checkpoint directory or a hub id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(ref, cache_dir=cache, local_files_only=True))
    except HFValidationError:
        raise SourceNotFoundError(
            f"hf:{ref} is neither a local directory nor a valid hub id (like google/siglip-base-patch16-224)"
        ) from None
    except (LocalEntryNotFoundError, OSError):
        raise SourceNotFoundError(
            f"hf:{ref} is not a local directory and the model {ref!r} is not in the Hugging Face cache "
            f"({cache}). {how}"
        ) from None
