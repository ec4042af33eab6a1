"""Attachments: files and images in messages. A storage port (data dir or an S3-compatible bucket),
type sniffing from the bytes, image re-encoding (EXIF stripped, thumbnails, bomb refusal), the
upload and download routes, and the link from a message to its files."""
