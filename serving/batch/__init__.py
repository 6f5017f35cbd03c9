"""Batch stylization of whole collections on Apache Beam (`impasto batch`)."""
