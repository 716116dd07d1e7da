"""A training run as data: its typed config (`config`), its checkpoints on disk (`checkpoints`) and the trained
model they hold (`trained_model`), below both training, which writes them, and evaluation and inference,
which read them."""
