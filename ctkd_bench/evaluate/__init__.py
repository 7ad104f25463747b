"""Evaluation: lm-eval for causal tracks (local task YAML + jsonl), direct accuracy for encoders."""
