"""The manager: the central service (REST API, UI, database). Never imports backends or CA SDKs."""
