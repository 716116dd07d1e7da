"""Benchmarks (`salesrl bench`): every variant runs in one process and ratios are printed."""
