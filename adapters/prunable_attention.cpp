// prunable_attention: see prunable_attention.h
