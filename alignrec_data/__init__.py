"""alignrec_data: raw Amazon image+text data to reproducible, released item features."""

__version__ = "0.1.0"

# Public loaders, imported on first use so that `import alignrec_data` stays light.
_LAZY = {
    "load_features": "alignrec_data.loaders",
    "load_interactions": "alignrec_data.loaders",
    "load_items": "alignrec_data.loaders",
    "to_mmrec": "alignrec_data.loaders",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alignrec_data' has no attribute {name!r}")
