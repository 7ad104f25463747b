"""Model and tokenizer sources: locally built (tiny suites) and loaded from folders."""
