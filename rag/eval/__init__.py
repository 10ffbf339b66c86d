"""Measuring the pipeline: question sets with gold answers and splits, and BEIR retrieval benchmarks."""
