"""alignrec_data: raw Amazon image+text data to reproducible, released item features."""

__version__ = "0.1.0"
