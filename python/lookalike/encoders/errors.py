"""The exceptions the encoders raise. All are ValueErrors: each one means that
an input (a bundle on disk, an uploaded image, a text) is unusable, and says why."""


class BundleError(ValueError):
    """A model bundle is missing, incomplete or has an invalid manifest.
    The message names the bundle, the field and the problem."""


class ImageDecodeError(ValueError):
    """Bytes that are not a decodable image: empty, truncated, corrupt or of an
    unknown format."""


class ImageTooLargeError(ImageDecodeError):
    """An image with more pixels than the configured limit (a guard against
    decompression bombs: a small file that decodes to gigabytes)."""
