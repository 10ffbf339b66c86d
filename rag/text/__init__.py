"""From article files to citable text: decoding and headers, sentence spans, chunks, word folding.

Nothing here knows about vectors or indexes; every stage above reads text through it.
"""
