"""Built-in method plugin: cot2align (being implemented; registers nothing yet)."""
