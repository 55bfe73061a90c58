"""Images in: OCR for text-only models, vision-language models and CLIP.

`load_image` checks every image and `VisionModel` runs a vision-language model; both live
with the other on-disk formats (`models/images.py`, `models/vlm.py`) and are re-exported here.
`chat_with_images` routes a question about images to a `VisionModel` (pixels) or, for a
text-only model, through OCR (`offline.py`); `ClipModel` classifies images zero-shot and
searches a folder of them by text.
"""

from lmforge.lazy import lazy_exports

_EXPORTS = {
    "ClipModel": "lmforge.vision.clip",
    "VisionModel": "lmforge.models.vlm",
    "chat_with_images": "lmforge.vision.ask",
    "image_summary": "lmforge.vision.ask",
    "is_vlm": "lmforge.models.vlm",
    "load_image": "lmforge.models.images",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
