"""Feature extraction kinds: tiny transformers models built in the tests, real MiniLM."""
