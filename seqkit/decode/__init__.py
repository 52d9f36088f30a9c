"""Decoding a trained character model from its run folder: sampling, beam search, the
prediction tree, scores, and the SavedModel export. Nothing here needs a trainer.

    from seqkit.decode import CharLM, Sampler, generate, sample
    lm = CharLM.load("runs/shakespeare")
    print(sample(lm, lm.encode_prime("ROMEO:"), 200, Sampler(temperature=0.8), seed=1))
    names = generate(lm, [lm.encode_prime("\n")], 40, num_samples=20, stop=["\n"])
"""

from seqkit.decode.lm import CharLM
from seqkit.decode.sampling import Sampler, sample
from seqkit.decode.scoring import score
from seqkit.decode.search import Beam, Node, beam_search, prediction_tree
from seqkit.decode.streams import Sample, generate

__all__ = [
    "Beam",
    "CharLM",
    "Node",
    "Sample",
    "Sampler",
    "beam_search",
    "generate",
    "prediction_tree",
    "sample",
    "score",
]
