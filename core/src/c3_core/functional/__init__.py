"""Low-level functional kernels shared by the modality plugins (pure torch, batched, device-agnostic).

Randomness comes only from an explicit ``torch.Generator``; no kernel here imports numpy.
"""
