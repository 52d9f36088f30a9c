"""Decoding a character model: sampling strategies, beam search, prediction trees, scoring."""
