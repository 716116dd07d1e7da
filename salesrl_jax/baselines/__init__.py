"""Strong baselines for turn-by-turn prediction, fitted on the same conversations as the model and scored on
the same prefixes: a TF-IDF logistic regression family, a logistic regression on the model's own input
representation, and gradient-boosted trees on the turn features. Every one predicts after turn t from
turns 1..t only. Needs scikit-learn (``pip install 'salesrl-jax[baselines]'``)."""
