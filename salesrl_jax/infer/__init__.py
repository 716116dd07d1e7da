"""Inference: int8 quantization, the streaming scorer, batch scoring of transcript archives."""
