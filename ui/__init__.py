"""The Gradio web page, a thin shell over the `rag` public API."""
