"""Cross-tokenizer alignment toolkit: pure, vectorised, tested once and hard."""
