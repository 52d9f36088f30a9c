"""`seqkit serve`: a loaded character model over HTTP, and a page where its prediction tree
grows as you type. Serving reads a run folder; it never needs a trainer."""
