"""Dataset factories: the embedded demo cohort (and, in a real plugin, loaders for user files)."""
