"""Networks: one factory over timm, one adapter per model family (``families``), where starting weights come
from, numeric precision, and the frozen stem's cache.
"""
