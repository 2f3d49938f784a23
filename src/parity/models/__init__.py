"""Model registry: immutable versions, movable aliases, artifacts stored by content hash, flavors."""  # noqa: E501
