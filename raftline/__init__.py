"""raftline: a sharded, transactional key-value store on Raft.

Applications import this package:

    import raftline

    with raftline.connect() as store:
        store.put("alice", 100)

It re-exports the client API of `clerk` (`connect`, the errors) and the
operator's `Cluster`; its subpackages are the `raftline` command's tools
(bench, verify, check, demo). raftline's own code lives in the top-level
packages `actors`, `coordinator` and `clerk`, installed beside this one: an
application module of one of those names, found first on `sys.path`, would
hide them, so importing raftline checks that they are raftline's and says
which file is in the way (docs/DESIGN.md section 7).
"""

import importlib.util
from pathlib import Path

OWN_PACKAGES = ("actors", "coordinator", "clerk")
_ROOT = Path(__file__).resolve().parent.parent


def _refuse_shadowed_packages() -> None:
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or origin.parent.parent != _ROOT:
            raise ImportError(f"{origin or name} hides raftline's package {name!r} (installed in {_ROOT}): "
                              f"rename your module {name!r}, or run from another directory")


_refuse_shadowed_packages()

# After the check, so a hidden package is named rather than half-imported.
from clerk import *  # noqa: E402,F403 - the client API, re-exported as it is
from clerk import __all__ as _CLIENT_API  # noqa: E402
from clerk import __version__  # noqa: E402,F401


def __getattr__(name: str):
    # The operator's API imports more; only those who use it pay for it.
    if name == "Cluster":
        from coordinator.admin import Cluster

        return Cluster
    raise AttributeError(f"module 'raftline' has no attribute {name!r}")


__all__ = [*_CLIENT_API, "Cluster", "__version__"]  # noqa: F405 - Cluster comes from __getattr__
