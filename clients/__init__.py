"""Deprecated: `from clients import Client` is the import before 0.2; use `from vistas_client import Client`.

This shim is not installed: it works only where the repository root is on sys.path (a source
checkout), for one release, and warns. The SDK installs as its own distribution: `pip install ./clients`.
"""

import warnings

warnings.warn(
    "`import clients` is deprecated and goes away in the next release: use `import vistas_client` "
    "(pip install ./clients)",
    DeprecationWarning,
    stacklevel=2,
)

from vistas_client import *  # noqa: E402,F403
from vistas_client import __all__  # noqa: E402,F401
