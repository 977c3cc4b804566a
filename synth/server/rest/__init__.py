"""The REST adapter's parts: request/response models, one router per resource, middleware."""
