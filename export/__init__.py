"""impasto.export"""
