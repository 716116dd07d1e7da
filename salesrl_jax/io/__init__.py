"""Files and jobs that survive a kill: atomic writes, run records, and the one resumable parallel map.

The lowest layer with `salesrl_jax.metrics`: it knows nothing of conversations or models, so every
job (`salesrl generate`, `embed`, `score`) resumes, cleans up and publishes its outputs the same way.
"""
