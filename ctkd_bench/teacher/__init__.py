"""The teacher side: signal computation and the content-addressed signal cache."""
