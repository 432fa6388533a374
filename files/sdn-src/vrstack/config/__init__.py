"""The config API (`vrstack-api`): typed model, storage, REST server and client."""
