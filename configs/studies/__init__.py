"""Ablation studies: each file defines ``get_study() -> Study`` (`salesrl_jax.run.study`); run one with

    salesrl study configs/studies/smoke.py --workdir runs/smoke
"""
