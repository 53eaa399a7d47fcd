"""Training: the backbone, the codec's two stages (denoising, then task) with the XAI loss, the
tensor-form channel used inside training, and the int8 grid for int8-aware training."""
