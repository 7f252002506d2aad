"""What the CLIP tower gives a head, by name, free of TensorFlow so the configuration checks them at load time.

clip.py computes both kinds in one pass of the tower; embedding_cache.py keeps
them apart under these names; docs/clip_backbone.md gives their shapes.
"""

EMBEDDING = 'embedding'  # the final image embedding [512]: ln_post and projection of the last class token
CLASS_TOKENS = 'class_tokens'  # the class token after each transformer block [BLOCKS, 768]
KINDS = (EMBEDDING, CLASS_TOKENS)
BLOCKS = 12  # ViT-B/16's transformer blocks, numbered 1..BLOCKS in `train.clip_blocks`
