"""vit_lib: the finished code of the vit-from-scratch notebooks, one module per lesson."""
from vit_lib.config import ConfigError, ViTConfig
from vit_lib.model import VisionTransformer, count_parameters

__version__ = "0.1.0"
__all__ = ["ConfigError", "ViTConfig", "VisionTransformer", "count_parameters", "__version__"]
