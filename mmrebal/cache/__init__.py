"""The HDF5 cache: format, crash-safe writer and a torch Dataset over it."""

from mmrebal.cache.format import FORMAT_VERSION, CacheError, CacheInfo, open_cache, read_info

__all__ = ["FORMAT_VERSION", "CacheError", "CacheInfo", "open_cache", "read_info"]
