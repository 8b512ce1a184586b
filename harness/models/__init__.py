"""Networks: one factory over timm, where starting weights come from, numeric precision, and the frozen stem's
cache.
"""
