"""impasto.serving"""
