"""The simulator's latent dynamics as a pure JAX environment (gymnax's shape): `EnvParams`, `EnvState`,
``reset(key, params)``, ``step(key, state, action, params)``; jittable and vmappable over conversations."""
