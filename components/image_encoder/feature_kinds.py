"""What the CLIP tower reads and gives a head, free of TensorFlow so the configuration checks them at load time.

clip.py computes both kinds in one pass of the tower; embedding_cache.py keeps
them apart under these names (and the input sizes apart by folder);
docs/clip_backbone.md gives their shapes.
"""

EMBEDDING = 'embedding'  # the final image embedding [512]: ln_post and projection of the last class token
CLASS_TOKENS = 'class_tokens'  # the class token after each transformer block [BLOCKS, 768]
KINDS = (EMBEDDING, CLASS_TOKENS)
BLOCKS = 12  # ViT-B/16's transformer blocks, numbered 1..BLOCKS in `train.clip_blocks`
PATCH = 16  # ViT-B/16's patch side, px
NATIVE_IMAGE_SIZE = 224  # the input CLIP was trained at: 14 x 14 patches (openai/CLIP, ViT-B/16)
# `train.image_size` the tower accepts: whole patches, 7 x 7 to 14 x 14 (clip.py resamples the
# position embedding to the grid; docs/clip_backbone.md, "Input size").
IMAGE_SIZES = tuple(range(7 * PATCH, NATIVE_IMAGE_SIZE + 1, PATCH))
