"""The index on disk and in memory: segments, snapshots, the chunk column store, vector and BM25 indexes."""
