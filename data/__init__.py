"""Installed as ``seqkit.data``: the data-set registry (``registry.json``), never data itself."""
