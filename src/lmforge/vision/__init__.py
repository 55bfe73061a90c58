"""Images in: one loader, OCR for text-only models, vision-language models and CLIP.

`load_image` checks every image (`images.py`); `chat_with_images` routes a question about
images to a `VisionModel` (pixels) or, for a text-only model, through OCR (`offline.py`);
`ClipModel` classifies images zero-shot and searches a folder of them by text.
"""

from lmforge.lazy import lazy_exports

_EXPORTS = {
    "ClipModel": "lmforge.vision.clip",
    "VisionModel": "lmforge.vision.vlm",
    "chat_with_images": "lmforge.vision.ask",
    "image_summary": "lmforge.vision.ask",
    "is_vlm": "lmforge.vision.vlm",
    "load_image": "lmforge.vision.images",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
