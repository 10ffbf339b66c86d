"""From ranked passages to a cited answer: extractive by default, or an LLM draft checked sentence by sentence."""
