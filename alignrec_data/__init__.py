"""alignrec_data: raw Amazon image+text data to reproducible, released item features."""

__version__ = "0.1.0"

# Public loaders, imported on first use so that `import alignrec_data` stays light.
_LOADERS = ("load_features", "load_interactions", "load_items", "to_mmrec")
__all__ = ["__version__", *_LOADERS]


def __getattr__(name: str):
    if name in _LOADERS:
        import importlib

        return getattr(importlib.import_module("alignrec_data.loaders"), name)
    raise AttributeError(f"module 'alignrec_data' has no attribute {name!r}")
