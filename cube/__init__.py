"""The embedding cube: a 3D lattice of identical cells mapping sentence embeddings to embeddings."""

__version__ = "0.1.0"
