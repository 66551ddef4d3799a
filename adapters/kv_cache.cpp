// kv_cache: see kv_cache.h
