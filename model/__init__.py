"""impasto.model"""
