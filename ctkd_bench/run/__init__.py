"""Running a suite: prepare tracks (data, tokenizers, teachers), run cells, write records."""
