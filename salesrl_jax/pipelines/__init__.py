"""End-to-end pipelines built from the library's steps (the top of the package graph, beside bench)."""
