"""Building and incrementally updating an index from article folders (text → encoders → storage)."""
