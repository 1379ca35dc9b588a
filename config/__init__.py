"""Configuration: the experiment schema, the ensemble file schema, one strict reader."""
