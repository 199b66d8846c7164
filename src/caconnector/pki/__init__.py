"""Pure X.509 helpers over `cryptography`: CSR loading and checks, keys, chains, serials, output formats.

Imports nothing else of ours.
"""
