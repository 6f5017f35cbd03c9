"""impasto.training"""
