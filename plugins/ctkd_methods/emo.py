"""Built-in method plugin: emo (being implemented; registers nothing yet)."""
