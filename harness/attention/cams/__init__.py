"""Class activation map extractors, one module per variant, registered by name in :data:`harness.core.registry.CAMS`.

Importing this package registers ``gradcam`` (the CAM fast path when exact, else autograd GradCAM),
``gradcam-autograd``, ``cam`` and every grad-cam package method
(:data:`harness.attention.cams.package.PACKAGE_METHODS`).
A new variant is one module with a :class:`CamExtractor` subclass and ``@CAMS.register("name")``, imported
here (see the README's "Adding a CAM variant").
"""
from harness.attention.cams import cam, gradcam, package  # noqa: F401  (registers the variants)
from harness.attention.cams.base import CamBatch, CamExtractor, check_target, make_extractor, require_network

__all__ = ["CamBatch", "CamExtractor", "check_target", "make_extractor", "require_network"]
