"""`mmrebal prep`: presets, dataset adapters and the parallel, resumable prep runner."""
