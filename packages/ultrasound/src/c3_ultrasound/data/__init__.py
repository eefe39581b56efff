"""Dataset factories: the embedded procedural demo cohort."""
