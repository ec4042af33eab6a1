"""Images are decoded once and re-encoded: what reaches another person has no EXIF (location,
camera serial), no text chunks and no trailing payload, and gets a thumbnail. Dimensions are read
from the header before any pixel is decoded, so a decompression bomb is refused cheaply."""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from server.errors import BadInput, TooLong

__all__ = ["IMAGE_TYPES", "ProcessedImage", "process_image"]

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "PNG", "image/webp": "WEBP"}


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    data: bytes
    media_type: str
    width: int
    height: int
    thumbnail: bytes
    thumbnail_type: str


def process_image(data: bytes, media_type: str, *, max_pixels: int, thumbnail_px: int) -> ProcessedImage:
    """Blocking (Pillow): run it in a thread."""
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns, or raises past twice its limit; ours is stricter and clearer.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height > max_pixels:
                raise TooLong(f"the image is {width}x{height} pixels; at most {max_pixels} pixels are accepted",
                              field="file")
            opened.load()
    except Image.DecompressionBombError:
        raise TooLong(f"the image has more than {max_pixels} pixels", field="file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"the image cannot be decoded: {exc}", field="file") from None
    img: Image.Image = ImageOps.exif_transpose(opened)  # keep what the camera meant, then drop the EXIF itself
    fmt = IMAGE_TYPES[media_type]
    out_type = "image/png" if fmt == "PNG" else media_type
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    elif fmt == "PNG" and img.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        img = img.convert("RGBA")
    clean = io.BytesIO()
    # Only pixels are written: no exif=, no icc/text info carried over.
    img.save(clean, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    thumb = img.copy()
    thumb.thumbnail((thumbnail_px, thumbnail_px))
    has_alpha = thumb.mode in ("RGBA", "LA", "P")
    tbuf = io.BytesIO()
    if has_alpha:
        thumb.save(tbuf, format="PNG")
    else:
        thumb.convert("RGB").save(tbuf, format="JPEG", quality=80)
    return ProcessedImage(clean.getvalue(), out_type, img.width, img.height, tbuf.getvalue(),
                          "image/png" if has_alpha else "image/jpeg")
