"""Task data: generators for the offline suites and PairBatch collation."""
