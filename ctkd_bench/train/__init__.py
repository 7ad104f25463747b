"""Training: the equal-budget trainer, the student forward pass and the budget meter."""
