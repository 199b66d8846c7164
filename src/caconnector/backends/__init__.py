"""CA backends: the contract (`base`), the typed errors (`errors`), what an option is (`options`), the config
model of every backend type by name (`configs`), discovery by entry point (`registry`), and one package
per backend type (`local`, `acmpca`, `gcpcas`), each of the same rooms: `__init__` (the BackendType),
`config`, `backend`, and `client` (the SDK seam) or `store` (local state) where it has them."""
