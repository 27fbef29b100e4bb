"""STADB person re-identification trainer built from stadb_layers."""
