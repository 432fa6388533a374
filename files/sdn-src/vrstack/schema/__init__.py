"""The schema transformer (`vrstack-schema`): compiles config intent into derived objects."""
