"""Deduplication of document collections (the work behind `llmtool dedup`).

Modules, one job each:
  normalise   FineWeb's text normalisation, vectorised over a batch
  exact       xxh3-128 of the normalised text; grouping equal keys
  minhash     word n-gram shingles and MinHash signatures (numpy), band hashes
  lsh         candidate pairs from equal band hashes; the S-curve
  unionfind   clusters from pairs (vectorised, order-independent labels)
  lines       C4-style repeated line / paragraph removal
  signatures  per-document keys of one input, spilled to disk by band
  pipeline    the passes: keys -> decisions -> outputs
"""
