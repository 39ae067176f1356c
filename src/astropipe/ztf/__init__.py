"""ZTF: alert packets (Avro) and data-release light curves (IRSA)."""
