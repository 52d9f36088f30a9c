"""Decoding a trained character model from its run folder: sampling, beam search, the
prediction tree, scores, and the SavedModel export. Nothing here needs a trainer.

    from seqkit.decode import CharLM, Sampler, sample
    lm = CharLM.load("runs/shakespeare")
    print(sample(lm, lm.encode_prime("ROMEO:"), 200, Sampler(temperature=0.8), seed=1))
"""

from seqkit.decode.lm import CharLM
from seqkit.decode.sampling import Sampler, sample
from seqkit.decode.scoring import score
from seqkit.decode.search import Beam, Node, beam_search, prediction_tree

__all__ = ["Beam", "CharLM", "Node", "Sampler", "beam_search", "prediction_tree", "sample", "score"]
