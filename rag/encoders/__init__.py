"""Text to vectors: the packaged MiniLM (ONNX Runtime or PyTorch) and a hashing fake for tests."""
